"""The engine's operations: one registry that the JSON-RPC server, the CLI and the agent all call.

Each op serves one `engine.protocol.methods.Method`: the registry parses the JSON params into the method's
params dataclass (bad types become a one-line `UserError`) and the op reads typed fields; cross-field checks
stay in the op. Ops marked `long` run as jobs (progress notifications, cancel); the rest answer at once.
Modules in this package register ops at import time; `load_all()` imports them. The `LIGHT` ones import no
torch (a contract in pyproject.toml holds them to it): an engine loads those at start (`load_light()`) and the
rest on a thread, so that listing runs never waits for torch.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.errors import UserError
from engine.jobs import JobContext
from engine.protocol.methods import Method
from engine.protocol.params import Params, ParamsError

log = logging.getLogger("difflens.engine")

P = TypeVar("P", bound=Params)
OpFn = Callable[[dict[str, Any], JobContext], dict[str, Any]]
CheckFn = Callable[[dict[str, Any]], None]
EXTRA_OPS_ENV = "DIFFLENS_EXTRA_OPS"   # comma-separated modules that register more ops (tests, plugins)
LIGHT = (f"{__name__}.catalog_ops",)


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
LOAD_ERRORS: dict[str, str] = {}   # op module -> why it failed to import (shown by engine.status)


def _typed(method: Method[P, Any], params: dict[str, Any]) -> P:
    """The method's params dataclass; a bad type is a one-line `UserError`."""
    try:
        return method.params.from_json(params)
    except ParamsError as exc:
        raise UserError(exc.problem, exc.fix) from None


def op(method: Method[P, Any], *, check: Callable[[P], None] | None = None,
       ) -> Callable[[Callable[[P, JobContext], dict[str, Any]]], OpFn]:
    """Register `fn` as the op serving `method`: the op takes the JSON params, parses them into the method's
    params class and calls `fn` with them inside the job's context (code below the op reports progress
    through `engine.jobs.current()`); the decorated name is the op as served (JSON params in). `check` (long
    ops) runs at submission, before the job is queued."""

    def register(fn: Callable[[P, JobContext], dict[str, Any]]) -> OpFn:
        if method.name in REGISTRY:
            raise ValueError(f"op {method.name!r} registered twice")

        def call(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
            typed = _typed(method, params)
            with ctx.active():
                return fn(typed, ctx)

        def checked(params: dict[str, Any]) -> None:
            assert check is not None
            check(_typed(method, params))

        REGISTRY[method.name] = Op(name=method.name, fn=call, long=method.long, doc=method.doc,
                                   check=checked if check is not None else None)
        return call

    return register


def load_light() -> dict[str, Op]:
    """Import the op modules that import no torch (`LIGHT`)."""
    _load(LIGHT)
    return REGISTRY


def load_all() -> dict[str, Op]:
    """Import every op module of this package and of `DIFFLENS_EXTRA_OPS`; a module that fails to import is
    logged and kept in `LOAD_ERRORS` (reported by `engine.status`) instead of hiding the others."""
    LOAD_ERRORS.clear()
    names = [f"{__name__}.{info.name}" for info in pkgutil.iter_modules(__path__)]
    _load([*names, *(n.strip() for n in os.environ.get(EXTRA_OPS_ENV, "").split(",") if n.strip())])
    return REGISTRY


def _load(names: Sequence[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # one broken module must not hide the others
            log.exception("could not load ops from %s", name)
            LOAD_ERRORS[name] = f"{type(exc).__name__}: {exc}"
