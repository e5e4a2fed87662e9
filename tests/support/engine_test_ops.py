"""Ops that only the engine-server tests register (`DIFFLENS_EXTRA_OPS=tests.support.engine_test_ops`): slow
steps with progress and cancel, typed params, failures, and stray output on stdout."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Self

from engine.jobs import JobContext
from engine.ops import op
from engine.protocol.methods import Method, NoParams
from engine.protocol.params import Params
from engine.protocol.results import Ack


@dataclass(frozen=True, kw_only=True)
class Steps(Params):
    steps: int = 5
    delay: float = 0.05


@dataclass(frozen=True, kw_only=True)
class Anything(Params):
    """Whatever JSON object was sent (echoed back as it came)."""

    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Any) -> Self:
        return cls(values=dict(data))

    def to_json(self) -> dict[str, Any]:
        return self.values


@dataclass(frozen=True, kw_only=True)
class Number(Params):
    n: int


@dataclass(frozen=True, kw_only=True)
class Seconds(Params):
    seconds: float = 1.0


SLEEP_STEPS = Method("test.sleep_steps", Steps, Ack, True,
                     "Sleep `steps` × `delay` s, reporting progress and one partial per step (honours cancel).")
ECHO = Method("test.echo", Anything, Ack, False, "Answer with the params.")
TYPED = Method("test.typed", Number, Ack, False, "Double an int `n` (anything else is a UserError).")
SLOW = Method("test.slow", Seconds, Ack, False,
              "A short op that takes `seconds` (others must still be answered meanwhile).")
BOOM = Method("test.boom", NoParams, Ack, False, "Fail with a bug (not a UserError).")
NOISY = Method("test.noisy", NoParams, Ack, False,
               "Print to stdout, which over stdio must not reach the protocol stream.")


@op(SLEEP_STEPS)
def sleep_steps(params: Steps, ctx: JobContext) -> dict[str, Any]:
    for step in range(1, params.steps + 1):
        time.sleep(params.delay)
        ctx.partial({"step": step})
        ctx.progress(step, params.steps, f"step {step}")
    return {"steps": params.steps}


@op(ECHO)
def echo(params: Anything, ctx: JobContext) -> dict[str, Any]:
    return {"echo": params.values}


@op(TYPED)
def typed(params: Number, ctx: JobContext) -> dict[str, Any]:
    return {"n": 2 * params.n}


@op(SLOW)
def slow(params: Seconds, ctx: JobContext) -> dict[str, Any]:
    time.sleep(params.seconds)
    return {"slept": True}


@op(BOOM)
def boom(params: NoParams, ctx: JobContext) -> dict[str, Any]:
    raise RuntimeError("kaboom")


@op(NOISY)
def noisy(params: NoParams, ctx: JobContext) -> dict[str, Any]:
    print("stray output that is not JSON", flush=True)
    return {"ok": True}
