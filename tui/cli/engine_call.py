"""Run one engine method for a CLI command: through a running engine, over ssh, or a private child."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from engine.protocol.methods import Method
from engine.protocol.params import Params, ParamsError
from engine.protocol.results import Result
from store import jsonvalue
from tui.cli.output import JobProgress, fail
from tui.client import EngineError, EngineUnavailable, UserFacingError, run_sync
from tui.client.base import read_result


def target_from(remote: str | None, engine: str | None) -> str | None:
    """`--remote user@host` means the engine on that host over ssh; `--engine` names any target."""
    if remote and engine:
        fail("--remote and --engine both given — pass only one")
    return f"ssh:{remote}" if remote else engine


P = TypeVar("P", bound=Params)
R = TypeVar("R", bound=Result)


def typed(method: Method[P, Any], params: dict[str, Any]) -> P:
    """Params gathered as a dict (board settings the user typed) as the method's params; bad ones fail in one line."""
    try:
        return method.params.from_json(params)
    except ParamsError as exc:
        fail(str(exc))


def call_engine(method: Method[P, R], params: P, *, title: str, target: str | None = None,
                on_event: Callable[[dict[str, Any]], None] | None = None) -> R:
    """The method's result; engine errors become one-line messages and exit code 2."""
    clean = params.to_json()
    if (where := jsonvalue.first_non_finite(clean)) is not None:
        fail(f"{where.split('.')[0]} is not a finite number — pass a number such as 1.5 (not nan or inf)")
    try:  # the engine's own checks of every param (counts, indices, 64-bit ints), before anything is sent
        method.params.from_json(clean)
    except ParamsError as exc:
        fail(str(exc))
    try:
        with JobProgress(title) as progress:
            def both(event: dict[str, Any]) -> None:
                progress(event)
                if on_event is not None:
                    on_event(event)

            return read_result(method, run_sync(method.name, clean, target=target, on_event=both, long=method.long))
    except UserFacingError as exc:
        fail(str(exc))
    except EngineUnavailable as exc:
        fail(f"engine unavailable: {exc} — start one with `difflens engine start`, or check --remote", code=3)
    except EngineError as exc:
        fail(f"engine error: {exc}", code=4)
    except KeyboardInterrupt:
        fail("interrupted — the run resumes from its last checkpoint when started again", code=130)
