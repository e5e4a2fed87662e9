"""A cluster that is not there never hangs the engine: `--ray ADDRESS` where nothing listens fails in one
line naming the address (through the CLI and a real engine, with a stand-in `ray` whose connect never
returns, as the real one did for 10 minutes), one that accepts the connection and never answers fails at
the deadline, and a cancel is heard while Ray is still connecting. Ray itself is not installed here."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.errors import JobCancelled, UserError
from engine.jobs import JobContext
from engine.triage import ray_board
from tests.support.engine_helpers import PY, ROOT, engine_env, short_dir

pytestmark = pytest.mark.reliability

# A `ray` whose connect blocks like a real one against an address where no cluster answers.
STAND_IN = """\
import time
def is_initialized():
    return False
def init(**kwargs):
    time.sleep(3600)
"""


def closed_port() -> int:
    """A local port where nothing listens (bound once, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_cluster() -> Iterator[str]:
    """An address that accepts TCP connections and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def hanging_ray(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "ray.py").write_text(STAND_IN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "ray", raising=False)


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}"])
def test_triage_on_a_closed_port_fails_in_one_line_naming_it(address: str, tiny_dir: Path, tiny_ft_dir: Path,
                                                             tmp_path: Path) -> None:
    address = address.format(port=closed_port())
    (tmp_path / "stand-in").mkdir()
    (tmp_path / "stand-in" / "ray.py").write_text(STAND_IN)
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text(f"- {{name: one, base: {tiny_dir}, ft: {tiny_ft_dir}}}\n")
    with short_dir() as runtime:
        env = engine_env(runtime)
        env["PYTHONPATH"] = f"{tmp_path / 'stand-in'}:{env['PYTHONPATH']}"
        began = time.monotonic()
        done = subprocess.run([PY, "-P", "-c", "from tui.cli import main; main()", "triage", "--pairs", str(pairs),
                               "--ray", address, "-n", "8", "-k", "3", "--device", "cpu", "--dtype", "float32"],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=150)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and address in done.stderr and "ray start --head" in done.stderr, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert time.monotonic() - began < 120


def test_a_cluster_that_never_answers_fails_at_the_deadline(hanging_ray: None, silent_cluster: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_board, "CONNECT_TIMEOUT_S", 1.0)
    began = time.monotonic()
    with pytest.raises(UserError, match=f"no Ray cluster answered at '{silent_cluster}' within 1 s"):
        ray_board.connect(silent_cluster, JobContext())
    assert time.monotonic() - began < 10


def test_a_cancel_is_heard_while_ray_is_connecting(hanging_ray: None, silent_cluster: str) -> None:
    ctx = JobContext()
    threading.Timer(0.5, ctx.cancel_event.set).start()
    began = time.monotonic()
    with pytest.raises(JobCancelled):
        ray_board.connect(silent_cluster, ctx)
    assert time.monotonic() - began < 5


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:notaport", "ray://:10001", "127.0.0.1:99999"])
def test_an_address_that_is_not_one_is_refused_at_once(hanging_ray: None, address: str) -> None:
    with pytest.raises(UserError, match="HOST:PORT"):
        ray_board.connect(address, JobContext())


def test_ray_connect_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, silent_cluster: str) -> None:
    class Refusing:
        def is_initialized(self) -> bool:
            return False

        def init(self, **kwargs: Any) -> None:
            raise ConnectionError("Could not find any running Ray instance.\nPlease specify the one to connect to.")

    monkeypatch.setitem(sys.modules, "ray", Refusing())
    with pytest.raises(UserError) as caught:
        ray_board.connect(silent_cluster, JobContext())
    assert "\n" not in str(caught.value) and "Could not find any running Ray instance." in str(caught.value)


class SilentHub:
    """`HfApi` whose listing never answers (the hub's client has no HTTP timeout): a blackholed endpoint."""

    def __init__(self) -> None:
        self.released = threading.Event()

    def list_models(self, **kwargs: Any) -> Iterator[Any]:
        self.released.wait(30)
        return iter(())


def test_a_hub_that_never_answers_fails_at_the_deadline_naming_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.triage import hub

    monkeypatch.setattr(hub, "LIST_DEADLINE_S", 1.0)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    api = SilentHub()
    began = time.monotonic()
    try:
        with pytest.raises(UserError, match=r"the hub at http://127.0.0.1:9 did not list .* within 1 s") as caught:
            hub.hub_entries(hub.HubQuery.parse("hub:org/base"), api=api, ctx=JobContext())  # type: ignore[arg-type]
    finally:
        api.released.set()
    assert "\n" not in str(caught.value) and time.monotonic() - began < 10


def test_a_cancel_is_heard_while_the_hub_is_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.triage import hub

    ctx, api = JobContext(), SilentHub()
    threading.Timer(0.5, ctx.cancel_event.set).start()
    began = time.monotonic()
    try:
        with pytest.raises(JobCancelled):
            hub.hub_entries(hub.HubQuery.parse("hub:org/base"), api=api, ctx=ctx)  # type: ignore[arg-type]
    finally:
        api.released.set()
    assert time.monotonic() - began < 5
