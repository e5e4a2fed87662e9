"""The working directory can never replace our code: every Python child difflens starts (the private engine,
`difflens engine start|status|attach` — what ssh runs on the far side —, the benchmarks) runs from a folder
holding hostile `engine/`, `store/`, `tui/`, `benchmarks/` and `torch/` packages that would leave a marker
and raise if imported, and none of them is imported. A scan keeps every new spawn on the one safe command
line (`engine.protocol.spawn`); Ray workers get a job working_dir (Ray otherwise puts the driver's working
directory first on their path)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.jobs import JobContext
from engine.triage import ray_board
from tests.support.engine_helpers import ROOT, engine_env, short_dir

pytestmark = pytest.mark.reliability

HOSTILE = ("engine", "store", "tui", "benchmarks", "torch")
CLI = Path(sys.executable).with_name("difflens")
# a Python child started as `python -m X` or `python -c CODE` puts the working directory first on sys.path
UNSAFE_SPAWN = re.compile(r"""sys\.executable\s*,\s*["']-[mc]["']""")


@pytest.fixture
def hostile() -> Iterator[tuple[Path, Path, dict[str, str]]]:
    """A working directory full of packages named like ours (each leaves a marker and raises when imported),
    the folder the markers land in, and the environment of an engine of the tests."""
    with short_dir("dl-cwd-") as work:
        cwd, markers = work / "project", work / "markers"
        markers.mkdir()
        for name in HOSTILE:
            package = cwd / name
            package.mkdir(parents=True)
            (package / "__init__.py").write_text(
                f"import pathlib\npathlib.Path({str(markers / name)!r}).write_text('imported')\n"
                f"raise SystemExit('the hostile {name} package of the working directory was imported')\n")
            (package / "__main__.py").write_text("")
        yield cwd, markers, engine_env(work / "rt")


def run(argv: list[str], cwd: Path, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=180)


def imported(markers: Path) -> list[str]:
    return sorted(p.name for p in markers.iterdir())


def test_no_python_child_is_started_in_a_way_the_working_directory_can_shadow() -> None:
    found = [f"{path.relative_to(ROOT)}:{number}" for folder in ("engine", "store", "tui", "benchmarks")
             for path in sorted((ROOT / folder).rglob("*.py"))
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if UNSAFE_SPAWN.search(line.split("#", 1)[0])]
    assert found == [], "start Python children with engine.protocol.spawn (python -P, PYTHONSAFEPATH)"


def test_engine_commands_run_ours_from_a_hostile_working_directory(hostile: tuple[Path, Path, dict[str, str]]
                                                                   ) -> None:
    cwd, markers, env = hostile
    sock = str(Path(env["DIFFLENS_RUNTIME_DIR"]) / "engine.sock")
    status = run([str(CLI), "engine", "status", "--socket", sock], cwd, env)
    assert "no engine running" in status.stdout + status.stderr, status.stderr
    started = run([str(CLI), "engine", "start", "--socket", sock], cwd, env)
    try:
        assert started.returncode == 0, started.stderr
        running = run([str(CLI), "engine", "status", "--socket", sock, "--json"], cwd, env)
        assert running.returncode == 0 and json.loads(running.stdout)["pid"] > 0, running.stderr
    finally:
        run([str(CLI), "engine", "stop", "--socket", sock], cwd, env)
    assert imported(markers) == []


def test_the_far_side_of_ssh_attaches_and_starts_ours(hostile: tuple[Path, Path, dict[str, str]]) -> None:
    """`ssh host difflens engine attach --stdio` runs this in the remote user's home, whatever lies there."""
    cwd, markers, env = hostile
    sock = str(Path(env["DIFFLENS_RUNTIME_DIR"]) / "attach.sock")
    hello = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "engine.hello", "params": {}}) + "\n"
    try:
        attached = run([str(CLI), "engine", "attach", "--stdio", "--socket", sock], cwd, env, stdin=hello)
        answers = [json.loads(line) for line in attached.stdout.splitlines() if line.strip()]
        assert any(a.get("id") == 1 and "result" in a for a in answers), attached.stderr
    finally:
        run([str(CLI), "engine", "stop", "--socket", sock], cwd, env)
    assert imported(markers) == []


def test_a_private_engine_is_ours_from_a_hostile_working_directory(hostile: tuple[Path, Path, dict[str, str]]
                                                                   ) -> None:
    cwd, markers, env = hostile
    code = ("import asyncio\nfrom tui.client import connect\n"
            "async def main():\n    client = await connect('stdio')\n"
            "    print((await client.call('engine.hello'))['pid'])\n    await client.close()\n"
            "asyncio.run(main())\n")
    private = run([sys.executable, "-P", "-c", code], cwd, env)
    assert private.returncode == 0 and private.stdout.strip().isdigit(), private.stderr
    assert imported(markers) == []


def test_the_benchmarks_are_ours_from_a_hostile_working_directory(hostile: tuple[Path, Path, dict[str, str]]
                                                                  ) -> None:
    cwd, markers, env = hostile
    bench = run([str(CLI), "bench", "--base", "x"], cwd, env)  # the real benchmarks refuse this before any work
    assert "pass --base and --ft together" in bench.stderr, bench.stderr
    assert imported(markers) == []


class FakeRay:
    """Stands in for `ray`: records how the driver connects."""

    def __init__(self) -> None:
        self.init_kwargs: dict[str, Any] = {}

    def is_initialized(self) -> bool:
        return False

    def init(self, **kwargs: Any) -> None:
        self.init_kwargs = kwargs


def test_ray_workers_do_not_get_the_drivers_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray inserts the driver's working directory first on every worker's sys.path unless the job has a
    working_dir of its own; ours is an empty private folder."""
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    ray_board.connect("auto", JobContext())
    working_dir = Path(fake.init_kwargs["runtime_env"]["working_dir"])
    assert working_dir.is_dir() and not any(working_dir.iterdir()) and working_dir != Path.cwd()
    assert os.stat(working_dir).st_mode & 0o077 == 0  # nobody else can plant a module in it
    working_dir.rmdir()
