"""Values that are not numbers (issue 23): NaN, ±inf and absurd magnitudes are refused up front in one place,
sizes are bounded, `self:` sampling is cancellable, and JSON written for other programs never says NaN/Infinity."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.adl.request import AdlRequest
from engine.errors import JobCancelled, UserError
from engine.protocol import wire
from engine.protocol.methods import SteerGenerate
from engine.protocol.params import ParamsError
from store import jsonvalue
from tests.support.engine_helpers import ROOT

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e308, -2e6])
def test_every_float_param_refuses_non_numbers_and_absurd_magnitudes(value: float) -> None:
    with pytest.raises(ParamsError, match="finite number of magnitude at most"):
        SteerGenerate.from_json({"run": "r", "max_strength": value})
    with pytest.raises(ParamsError, match="finite number"):
        SteerGenerate.from_json({"run": "r", "strengths": [1.0, value]})
    assert SteerGenerate.from_json({"run": "r", "max_strength": 120.0}).max_strength == 120.0


@pytest.mark.parametrize(("field", "value", "expect"), [
    ("k", 1_000_000_000, "k must be at most 4,096"), ("n", 10**12, "n must be at most 1,000,000"),
    ("batch_size", 10**9, "batch size must be at most")])
def test_sampling_sizes_are_bounded_before_anything_loads(field: str, value: int, expect: str) -> None:
    request = AdlRequest(base="b", ft="f", corpus="self:", **{field: value})  # type: ignore[arg-type]
    with pytest.raises(UserError, match=expect):
        request.validate()


def test_counts_of_lens_and_steering_params_are_bounded() -> None:
    with pytest.raises(ParamsError, match="max_new_tokens must be at most"):
        SteerGenerate.from_json({"run": "r", "max_new_tokens": 10**9})
    with pytest.raises(ParamsError, match="must be positive"):
        SteerGenerate.from_json({"run": "r", "n_samples": 0})


def test_json_for_other_programs_never_holds_nan_or_infinity() -> None:
    line = wire.encode(wire.result(1, {"a": math.inf, "b": [math.nan, 1.5]}))
    assert b"Infinity" not in line and b"NaN" not in line
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in output"))["result"] == {
        "a": None, "b": [None, 1.5]}
    with pytest.raises(wire.ProtocolError, match="not a JSON number"):
        wire.decode(b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"s":NaN}}')
    assert jsonvalue.first_non_finite({"strengths": [1.0, math.inf]}) == "strengths.1"


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "DIFFLENS_HOME": str(home), "PYTHONPATH": str(ROOT),
           "DIFFLENS_RUNTIME_DIR": str(home / "run")}
    return subprocess.run([sys.executable, "-c", "from tui.cli import main; main()", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("strength", ["nan", "inf", "-inf"])
def test_the_cli_refuses_a_non_finite_strength_in_one_line(strength: str, isolated_home: Path) -> None:
    proc = _cli("steer", "adl-0000000000000000", "--strength", strength, "--json", home=isolated_home)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "not a finite number" in proc.stderr
    assert proc.stdout == ""


def test_self_sampling_stops_at_the_next_batch_when_cancelled(tiny_dir: Path) -> None:
    from engine.adl.compute import compute_adl
    from engine.jobs import JobContext

    events: list[dict[str, Any]] = []
    ctx = JobContext()

    def emit(event: dict[str, Any]) -> None:
        events.append(event)
        if "sampling self:" in event.get("message", ""):
            ctx.cancel_event.set()  # the user cancels while the first batch is being reported

    ctx.emit = emit
    request = AdlRequest(base=str(tiny_dir), ft=str(tiny_dir), corpus="self:", n=640, k=2, device="cpu",
                         dtype="float32")
    with pytest.raises(JobCancelled):
        compute_adl(request, ctx)
    sampled = [e for e in events if "sampling self:" in e.get("message", "")]
    assert [e["done"] for e in sampled] == [64]  # one batch of 64, not all 640


def test_a_long_job_does_not_starve_a_job_the_store_can_answer(tiny_dir: Path, tiny_ft_dir: Path,
                                                               tmp_path: Path) -> None:
    """With the only worker busy, a cached `adl.compute` is answered at once; one that needs the models waits."""
    import threading

    from engine.adl.compute import compute_adl
    from engine.ops import Op, load_all
    from engine.server.job_queue import JobManager
    from tests.support.engine_helpers import write_corpus

    class Owner:
        def __init__(self) -> None:
            self.done: dict[str, threading.Event] = {}

        def send(self, message: dict[str, Any]) -> None:
            if message.get("method") in (wire.JOB_DONE, wire.JOB_FAILED):
                self.done.setdefault(message["params"]["job"], threading.Event()).set()

        def wait(self, job_id: str) -> bool:
            return self.done.setdefault(job_id, threading.Event()).wait(120)

    request = {"base": str(tiny_dir), "ft": str(tiny_ft_dir), "corpus": str(write_corpus(tmp_path / "c.txt")),
               "n": 8, "k": 2, "device": "cpu", "dtype": "float32"}
    cached = compute_adl(AdlRequest(**request)).run  # type: ignore[arg-type]
    release = threading.Event()

    def long_job(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
        release.wait(300)
        return {"ok": True}

    manager, owner = JobManager(workers=1), Owner()
    try:
        blocker = manager.create(Op("lens.blocking", long_job, True, ""), {}, owner, "test")
        manager.start(blocker)
        compute = load_all()["adl.compute"]
        hit = manager.create(compute, request, owner, "test")
        manager.start(hit)
        assert owner.wait(hit.id) and hit.result is not None and hit.result["run"] == cached
        assert hit.result["cached"] is True and blocker.state in ("queued", "running")
        fresh = manager.create(compute, {**request, "seed": 1}, owner, "test")  # not stored: needs the models
        manager.start(fresh)
        assert not owner.done.get(fresh.id, threading.Event()).is_set() and fresh.state == "queued"
        release.set()
        assert owner.wait(fresh.id) and fresh.state == "done" and fresh.result["cached"] is False  # type: ignore[index]
    finally:
        release.set()
        manager.stop()
