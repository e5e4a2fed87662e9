"""How every Python child of difflens is started (engines, `difflens engine ...`, benchmarks, CLI children),
so that the working directory can never replace our code.

`python -m engine` (and `-c`) put the current directory first on `sys.path`: a folder named `engine/`,
`store/` or `tui/` where the user runs difflens would be imported instead of ours and its code would run.
`-P` (Python >= 3.11) keeps the current directory off the path, and `PYTHONSAFEPATH=1` in the child's
environment does the same for every Python it starts in turn; this checkout comes first on `PYTHONPATH`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent.parent)  # the folder holding engine/, store/, tui/


def python_argv(*args: str) -> list[str]:
    """`python -P ARGS...`: this interpreter, with the working directory kept off `sys.path`."""
    return [sys.executable, "-P", *args]


def module_argv(module: str, *args: str) -> list[str]:
    """The command line that runs `python -m MODULE ARGS...` from this checkout, whatever the working directory."""
    return python_argv("-m", module, *args)


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a Python child: this checkout first on `PYTHONPATH` (importable when not installed)
    and `PYTHONSAFEPATH=1` (its own children, `-c` included, never import from their working directory)."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH", "")) if p)
    env["PYTHONSAFEPATH"] = "1"
    return env
