"""Store faults: concurrent writers, a full disk, flipped bits, unwritable homes — nothing lost or torn."""

from __future__ import annotations

import errno
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from store import atomic, results
from store.errors import StoreError

pytestmark = pytest.mark.reliability

WRITERS, RUNS = 4, 200


def _writer(home: str, writer: int) -> None:
    os.environ["DIFFLENS_HOME"] = home
    for run in range(RUNS):
        results.save("stress", {"writer": writer, "run": run},
                     {"x": np.full((4,), writer * 1000 + run, dtype=np.float32)}, {"writer": writer})


def test_four_writers_two_hundred_runs_each_lose_nothing(isolated_home: Path) -> None:
    results.list_results()  # create the schema once, as an engine would
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(isolated_home), w)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    rows = results.list_results("stress")
    assert len(rows) == WRITERS * RUNS
    assert len({r["key"] for r in rows}) == WRITERS * RUNS
    for r in rows[:: 37]:
        loaded = results.load(r["key"])
        assert loaded is not None
        assert loaded.tensors["x"][0] == r["inputs"]["writer"] * 1000 + r["inputs"]["run"]
    assert not list(Path(isolated_home, "tensors").glob("*.tmp"))


def test_full_disk_is_a_clear_error_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results, "save_file", no_space)
    with pytest.raises(StoreError, match=r"disk full.*nothing was half-written"):
        results.save("adl", {"a": 1}, {"x": np.zeros(3, dtype=np.float32)}, {})
    assert results.lookup("adl", {"a": 1}) is None
    assert list(Path(isolated_home, "tensors").iterdir()) == []


def test_flipped_bit_is_detected_and_not_served(isolated_home: Path) -> None:
    saved = results.save("adl", {"a": 2}, {"x": np.arange(100, dtype=np.float32)}, {})
    path = results.file_for(saved.key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert results.load(saved.key) is None


def test_unwritable_home_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/difflens-cannot-write/x.safetensors")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "x.safetensors"
    with pytest.raises(StoreError), atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
