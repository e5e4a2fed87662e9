"""`python -m benchmarks.child STEP JSON_ARGS`: one benchmark step in a fresh process.

Prints its result as the last stdout line, prefixed with `RESULT `; torch is imported only by steps that
need it (replay must show it never loads).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

PREFIX = "RESULT "


def _threads(count: int | None) -> None:
    if count:
        import torch

        torch.set_num_threads(count)


def run(step: str, args: dict[str, Any]) -> dict[str, Any]:
    if step == "replay":
        from benchmarks.replay import first_paint

        return first_paint(args.get("session"))
    if step == "tui_cached":
        from benchmarks.workbench import cached_paint

        return cached_paint(args["run"])
    _threads(args.pop("threads", None))
    if step == "load":
        from benchmarks.loads import load

        return load(**args)
    if step == "adl_memory":
        from benchmarks.loads import adl_memory

        return adl_memory(**args)
    if step == "board_adapters":
        from benchmarks.board import make_adapters

        return make_adapters(**args)
    if step in ("board_pairwise", "board_shared"):
        from benchmarks.board import run_pairs

        return run_pairs(**args, shared=step == "board_shared")
    if step in ("trajectory_separate", "trajectory_shared"):
        from benchmarks.trajectory import run_steps

        return run_steps(**args, together=step == "trajectory_shared")
    raise SystemExit(f"unknown benchmark step {step!r}")


def main() -> None:
    step, args = sys.argv[1], json.loads(sys.argv[2])
    result = run(step, args)
    from benchmarks.timing import max_rss_mb

    result.setdefault("peak_rss_mb", round(max_rss_mb(), 1))
    sys.stdout.flush()
    os.write(1, (PREFIX + json.dumps(result) + "\n").encode())


if __name__ == "__main__":
    main()
