"""The engine's operations: one registry that the JSON-RPC server, the CLI and the agent all call.

An op takes JSON-able params and a `JobContext` and returns a JSON-able dict. Ops marked `long` run as
jobs (progress notifications, cancel); the rest answer at once. Each op validates its params and raises
`UserError` with a one-line fix for bad input. Modules in this package register ops at import time;
`load_all()` imports them.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.jobs import JobContext

OpFn = Callable[[dict[str, Any], JobContext], dict[str, Any]]
CheckFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Op:
    """`check` (long ops): quick validation run when the job is submitted, so that input that can never work is
    refused at once instead of after the queue (it raises `UserError`)."""

    name: str
    fn: OpFn
    long: bool
    doc: str
    check: CheckFn | None = None


REGISTRY: dict[str, Op] = {}


def op(name: str, *, long: bool = False, check: CheckFn | None = None) -> Callable[[OpFn], OpFn]:
    """Register `fn` as the op `name` (dotted names group them, e.g. `organism.train`)."""

    def register(fn: OpFn) -> OpFn:
        if name in REGISTRY:
            raise ValueError(f"op {name!r} registered twice")

        @functools.wraps(fn)
        def active(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
            with ctx.active():  # code below the op reports progress through `engine.jobs.current()`
                return fn(params, ctx)

        REGISTRY[name] = Op(name=name, fn=active, long=long, doc=(fn.__doc__ or "").strip().splitlines()[0],
                            check=check)
        return fn

    return register


def load_all() -> dict[str, Op]:
    """Import every op module in this package so that the registry is complete."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return REGISTRY
