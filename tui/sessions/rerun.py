"""Re-run a session's questions on another model pair through a real engine, pairing old and new answers.

The first `adl.compute` (or, for a session that opened a cached run, the request stored with that run) is
asked again with the new base/finetuned models; every later action is asked with the old run id replaced by
the new one. The new answers are recorded as a new session, so the rerun can itself be replayed and shared.

A session may come from someone else, so what it recorded is a question, never a decision: only read-only analysis
methods are re-asked, every model it names is replaced by the pair typed now, and nothing it holds can turn on
custom model code or pick the agent's LLM (`SESSION_CHOSEN`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.protocol import methods
from store import imported, jsonvalue, results, sessions
from store.errors import StoreError
from tui.client import EngineClient, EngineError, connect
from tui.sessions.client import SessionClient, SessionTap
from tui.sessions.recording import SessionRecorder
from tui.sessions.source import SessionSource, load_source

REASKED = ("adl.", "readout.", "steer.", "lens.", "agent.")  # method prefixes a rerun may ask again
SESSION_CHOSEN = ("trust_remote_code", "llm", "grader_llm")  # never taken from a session, only from the user


@dataclass(frozen=True)
class Step:
    """One question and its two answers (`error` says why the new one is missing)."""

    method: str
    params: dict[str, Any]
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    error: str = ""


def stored_request(run: str, session_id: str) -> dict[str, Any] | None:
    """The ADL request a run was computed from (its result's metadata; computed here or imported with the session)."""
    row = results.row(run) or imported.row(run, session_id)
    if row is None:
        return None
    try:
        request = jsonvalue.loads(row["meta"]).get("request")
    except (jsonvalue.JsonValueError, AttributeError):
        return None
    return request if isinstance(request, dict) else None


def retarget(params: dict[str, Any], base: str, ft: str, adapter: str | None,
             trust_remote_code: bool) -> dict[str, Any]:
    """`params` with every model named by the session replaced by the pair typed now, and the choices a session
    may not make (`SESSION_CHOSEN`) taken from the user."""
    out = {k: v for k, v in params.items() if k not in SESSION_CHOSEN}
    if "base" in out or "ft" in out:
        out.pop("adapter", None)
        out.update(base=base, ft=ft, **({"adapter": adapter} if adapter else {}))
    if trust_remote_code:
        out["trust_remote_code"] = True
    return out


def compute_params(source: SessionSource, base: str, ft: str, adapter: str | None,
                   trust_remote_code: bool = False) -> tuple[str, dict[str, Any]]:
    """The old run id and the `adl.compute` params that make its counterpart on the new pair."""
    for action in source.actions:
        if action["method"] == methods.ADL_COMPUTE.name:
            old_run, params = str(action["result"]["run"]), dict(action["params"])
            break
    else:
        old_run = source.run
        request = stored_request(old_run, source.id) if old_run else None
        if request is None:
            raise StoreError(f"session {source.name!r} does not say how its run was computed",
                             "import the session (its results hold the request) or record one that computes")
        params = {k: v for k, v in request.items() if v is not None}
    return old_run, retarget({**params, "base": base, "ft": ft}, base, ft, adapter, trust_remote_code)


def _swap(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, dict):
        return {k: _swap(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap(v, old, new) for v in value]
    return value


def unique_name(name: str) -> str:
    """`name` made valid (no slashes, at most 80 characters) and not yet taken."""
    name = name.replace("/", "∕").replace("\\", "∕")[:72]
    candidate, i = name, 2
    while sessions.find(candidate) is not None:
        candidate, i = f"{name} ({i})", i + 1
    return candidate


async def rerun(source: SessionSource, base: str, ft: str, *, adapter: str | None = None, target: str | None = None,
                on_step: Callable[[int, int, str], None] | None = None, client: EngineClient | None = None,
                trust_remote_code: bool = False) -> tuple[sessions.Session, list[Step]]:
    """Ask the engine the session's questions on (`base`, `ft`); returns the new session and the pairs."""
    old_run, compute = compute_params(source, base, ft, adapter, trust_remote_code)
    name = unique_name(f"{source.name} on {Path(ft).name or ft}")
    recorder = SessionRecorder(sessions.create(name, origin=source.id))
    live = client or await connect(target)
    engine = SessionClient(live, SessionTap(recorder))
    steps: list[Step] = []
    try:
        if on_step:
            on_step(0, len(source.actions) + 1, methods.ADL_COMPUTE.name)
        computed = await engine.run_job(methods.ADL_COMPUTE.name, compute)
        old_compute = next((a["result"] for a in source.actions if a["method"] == methods.ADL_COMPUTE.name), None)
        steps.append(Step(methods.ADL_COMPUTE.name, compute, old_compute, computed))
        new_run = str(computed["run"])
        todo = [a for a in source.actions if a["method"] != methods.ADL_COMPUTE.name]
        for i, action in enumerate(todo, 1):
            method = action["method"]
            params = retarget(_swap(action["params"], old_run, new_run), base, ft, adapter, trust_remote_code)
            if on_step:
                on_step(i, len(todo) + 1, method)
            if not method.startswith(REASKED):
                steps.append(Step(method, params, action["result"], None, f"not asked again: {method} is not a "
                                                                          "read-only analysis"))
                continue
            try:
                ask = engine.run_job if action["kind"] == "job" else engine.call
                steps.append(Step(method, params, action["result"], await ask(method, params)))
            except EngineError as exc:
                steps.append(Step(method, params, action["result"], None, str(exc)))
    finally:
        if client is None:
            await live.close()
    recorder.save_ui(_swap(source.ui, old_run, new_run))
    return sessions.get(recorder.session.id), steps


def rerun_steps(ref: str, base: str, ft: str, adapter: str | None, target: str | None,
                on_step: Callable[[int, int, str], None] | None = None,
                trust_remote_code: bool = False) -> tuple[str, str, list[Step]]:
    """Rerun session `ref` on the new pair; (old label, new label, steps)."""
    source = load_source(ref)
    new, steps = asyncio.run(rerun(source, base, ft, adapter=adapter, target=target, on_step=on_step,
                                   trust_remote_code=trust_remote_code))
    return f"{source.name}: {source.base} → {source.ft}", f"{new.name}: {new.base} → {new.ft}", steps
