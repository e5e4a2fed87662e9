"""Faults: the engine SIGKILLed mid-compute resumes from its checkpoint and ends where an uninterrupted run
ends, with no partial result in the store meanwhile; two CLIs computing the same run at once leave one row
and one file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from store.hashing import file_sha256
from tests.support.engine_helpers import PY, ROOT, engine_cli, engine_env, short_dir, until, write_corpus
from tui.client import EngineUnavailable, connect

pytestmark = pytest.mark.reliability

_SCRIPT = Path(sys.executable).with_name("difflens")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [PY, "-c", "from tui.cli import main; main()"]


def result_keys(home: Path) -> list[str]:
    db = home / "difflens.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            return [row[0] for row in conn.execute("select key from results")]
        except sqlite3.OperationalError:
            return []


def with_base_pass(run: str, home: Path) -> tuple[list[str], list[str]]:
    """What a finished run leaves: its own row and file, and one base pass (its own cached result, issue 19)."""
    keys = result_keys(home)
    [base] = [k for k in keys if k.startswith("adl-base-")]
    return sorted([run, base]), sorted([f"{run}.safetensors", f"{base}.safetensors"])


def visible_tensors(home: Path) -> list[str]:
    """Files a reader could take for a result (atomic writes' hidden temp files aside)."""
    tensors = home / "tensors"
    return sorted(p.name for p in tensors.iterdir() if not p.name.startswith(".")) if tensors.exists() else []


def serve(sock: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([PY, "-m", "engine", "serve", "--socket", str(sock)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:   # a killed engine's socket file is still there: wait until this one answers
        assert proc.poll() is None and time.monotonic() < deadline, "the engine did not start"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(sock))
                return proc
            except OSError:
                time.sleep(0.05)


def test_an_engine_killed_mid_compute_resumes_from_its_checkpoint(tiny_dir: Path, tiny_ft_dir: Path,
                                                                 tmp_path: Path) -> None:
    from engine.adl.compute import compute_adl
    from engine.adl.request import AdlRequest

    n = 400
    params = {"base": str(tiny_dir), "ft": str(tiny_ft_dir), "corpus": str(write_corpus(tmp_path / "c.txt", n)),
              "n": n, "k": 3, "batch_size": 2, "device": "cpu"}
    with short_dir() as runtime:
        env = engine_env(runtime, DIFFLENS_CHECKPOINT_EVERY_S="0")
        home, sock = Path(env["DIFFLENS_HOME"]), runtime / "engine.sock"

        engine = serve(sock, env)
        seen: list[dict[str, Any]] = []

        async def until_killed() -> None:
            client = await connect(f"unix:{sock}")
            client.on_notification(lambda method, p: seen.append(p))
            await client.submit("adl.compute", params)
            await until(lambda: any(e.get("total") == n and e.get("done", 0) >= 60 for e in seen), 240, "progress")
            engine.send_signal(signal.SIGKILL)
            engine.wait(30)
            with contextlib.suppress(EngineUnavailable):
                await client.close()

        asyncio.run(until_killed())
        [checkpoint] = visible_tensors(home)
        assert checkpoint.endswith(".checkpoint.safetensors"), "no partial result file, only the checkpoint"
        assert result_keys(home) == []
        summed = int(load_file(str(home / "tensors" / checkpoint))["counts"][0])
        assert 60 <= summed < n

        engine = serve(sock, env)   # the stale socket of the killed engine is cleared
        progress: list[dict[str, Any]] = []

        async def resubmit() -> dict[str, Any]:
            client = await connect(f"unix:{sock}")
            try:
                return await client.run_job("adl.compute", params, progress.append)
            finally:
                await client.close()

        try:
            resumed = asyncio.run(resubmit())
        finally:
            engine_cli("stop", "--socket", str(sock), env=env)
            engine.wait(60)
        texts = [e["done"] for e in progress if e.get("type") == "progress" and e.get("total") == n]
        assert texts[0] > summed >= 60, "the resumed run started past its checkpoint, not at 0"
        assert resumed["cached"] is False and resumed["n"] == n
        rows, files = with_base_pass(resumed["run"], home)
        assert visible_tensors(home) == files and sorted(result_keys(home)) == rows
        interrupted = load_file(resumed["file"])

    uninterrupted = compute_adl(AdlRequest(**params))   # in this test's own, empty DIFFLENS_HOME
    assert uninterrupted.run == resumed["run"] and not uninterrupted.cached
    for name in ("mean_diff", "mean_base", "base_norm", "ft_norm"):
        assert np.abs(interrupted[name] - uninterrupted.result.tensors[name]).max() < 1e-6, name


def test_two_clis_computing_the_same_run_at_once_leave_one_row_and_one_file(tiny_dir: Path, tiny_ft_dir: Path,
                                                                            tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "c.txt", 120)
    argv = [*CLI, "compute", "--base", str(tiny_dir), "--ft", str(tiny_ft_dir), "--corpus", str(corpus),
            "-n", "120", "-k", "3", "--batch-size", "2", "--device", "cpu", "--json"]
    with short_dir() as runtime:   # no engine running: each CLI spawns its own private engine
        env = engine_env(runtime, DIFFLENS_CHECKPOINT_EVERY_S="0")   # both write the checkpoint, too
        home = Path(env["DIFFLENS_HOME"])
        procs = [subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        outs = [p.communicate(timeout=600) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
        runs = {json.loads(out)["run"] for out, _ in outs}
        assert len(runs) == 1
        [run] = runs
        rows, files = with_base_pass(run, home)
        assert sorted(result_keys(home)) == rows
        assert visible_tensors(home) == files
        assert not list((home / "tensors").glob("*.tmp"))
        with sqlite3.connect(home / "difflens.sqlite") as conn:
            [(sha,)] = conn.execute("select sha256 from results where key = ?", [run]).fetchall()
        assert file_sha256(home / "tensors" / f"{run}.safetensors") == sha, "the row describes the file on disk"


def test_a_checkpoint_with_a_flipped_byte_is_discarded_not_resumed(tiny_dir: Path, tiny_ft_dir: Path,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """One flipped byte inside a checkpoint's sums fails its checksum: the run starts over and records the
    same mean as an uninterrupted run (issue 23), instead of resuming from the damaged sums."""
    from engine.adl import compute
    from engine.adl.request import AdlRequest
    from engine.errors import JobCancelled
    from engine.jobs import JobContext
    from store import results

    monkeypatch.setattr(compute, "CHECKPOINT_EVERY_S", 0.0)
    request = AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus=str(write_corpus(tmp_path / "c.txt", 96)),
                         n=96, k=3, batch_size=8, device="cpu", dtype="float32")
    monkeypatch.setenv("DIFFLENS_HOME", str(tmp_path / "clean"))
    clean = compute.compute_adl(request).result.tensors["mean_diff"]
    monkeypatch.setenv("DIFFLENS_HOME", str(tmp_path / "damaged"))
    ctx = JobContext()
    ctx.emit = lambda event: ctx.cancel_event.set() if (event.get("done") or 0) >= 24 else None
    with pytest.raises(JobCancelled):
        compute.compute_adl(request, ctx)
    [checkpoint] = (tmp_path / "damaged" / "tensors").glob("*.checkpoint.safetensors")
    data = bytearray(checkpoint.read_bytes())
    header_end = 8 + int.from_bytes(data[:8], "little")
    start = json.loads(data[8:header_end])["ft"]["data_offsets"][0]
    data[header_end + start + 8 * 5 + 6] ^= 0x10   # an exponent bit of one finetuned sum: still parses, wrong mean
    checkpoint.write_bytes(bytes(data))
    assert int(load_file(str(checkpoint))["counts"][0]) >= 24
    resumed = compute.compute_adl(request)
    assert not resumed.cached and not checkpoint.exists()
    np.testing.assert_array_equal(resumed.result.tensors["mean_diff"], clean)
    assert results.load(resumed.run) is not None
