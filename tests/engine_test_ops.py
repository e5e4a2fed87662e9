"""Ops that only the engine-server tests register (`DIFFLENS_EXTRA_OPS=tests.engine_test_ops`): slow
steps with progress and cancel, typed params, failures, and stray output on stdout."""

from __future__ import annotations

import time
from typing import Any

from engine.jobs import JobContext
from engine.ops import op
from engine.params import get


@op("test.sleep_steps", long=True)
def sleep_steps(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Sleep `steps` × `delay` s, reporting progress and one partial per step (honours cancel)."""
    steps = get(params, "steps", int, 5)
    delay = get(params, "delay", float, 0.05)
    for step in range(1, steps + 1):
        time.sleep(delay)
        ctx.partial({"step": step})
        ctx.progress(step, steps, f"step {step}")
    return {"steps": steps}


@op("test.echo")
def echo(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Answer with the params."""
    return {"echo": params}


@op("test.typed")
def typed(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Double an int `n` (anything else is a UserError)."""
    return {"n": 2 * get(params, "n", int, required=True)}


@op("test.slow")
def slow(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """A short op that takes `seconds` (others must still be answered meanwhile)."""
    time.sleep(get(params, "seconds", float, 1.0))
    return {"slept": True}


@op("test.boom")
def boom(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Fail with a bug (not a UserError)."""
    raise RuntimeError("kaboom")


@op("test.noisy")
def noisy(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Print to stdout, which over stdio must not reach the protocol stream."""
    print("stray output that is not JSON", flush=True)
    return {"ok": True}
