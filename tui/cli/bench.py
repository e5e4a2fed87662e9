"""`difflens bench [--quick] [--json]`: the benchmarks (`python -P -m benchmarks`) in a child process.

The CLI never imports torch; the benchmarks need it, so they run as their own process with this checkout
importable, printing their table (or JSON) straight to this terminal.
"""

from __future__ import annotations

import subprocess
from typing import Annotated

import typer

from engine.protocol.spawn import child_env, module_argv


def bench(quick: Annotated[bool, typer.Option("--quick", help="Small sizes (about 2 minutes on a CPU).")] = False,
          json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the table.")] = False,
          base: Annotated[str | None, typer.Option("--base", help="Base model (default gemma-3-270m).")] = None,
          ft: Annotated[str | None, typer.Option("--ft", help="Finetuned model (default demo).")] = None,
          adapter: Annotated[str | None, typer.Option("--adapter", help="peft adapter for --ft.")] = None,
          device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
          dtype: Annotated[str, typer.Option("--dtype", help="auto, float32 or bfloat16.")] = "auto",
          threads: Annotated[int | None, typer.Option("--threads", help="torch CPU threads (default 1).")] = None,
          n: Annotated[str | None, typer.Option("--n", help="End-to-end sizes, e.g. 256,1024,4096.")] = None) -> None:
    """Time every step beside the straightforward way and its floor; prints the ratio table."""
    argv = module_argv("benchmarks", "--device", device, "--dtype", dtype)
    argv += ["--quick"] * quick + ["--json"] * json
    for flag, value in (("--base", base), ("--ft", ft), ("--adapter", adapter), ("--threads", threads),
                        ("--n", n)):
        if value is not None:
            argv += [flag, str(value)]
    raise typer.Exit(subprocess.run(argv, env=child_env(), check=False).returncode)


def register(app: typer.Typer) -> None:
    """Add `bench` to the main `difflens` command."""
    app.command()(bench)
