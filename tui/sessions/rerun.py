"""Re-run a session's questions on another model pair through a real engine, pairing old and new answers.

The first `adl.compute` (or, for a session that opened a cached run, the request stored with that run) is
asked again with the new base/finetuned models; every later action is asked with the old run id replaced by
the new one. The new answers are recorded as a new session, so the rerun can itself be replayed and shared.

A session may come from someone else, so what it recorded is a question, never a decision: only read-only analysis
methods are re-asked, and of their params only those that shape the question (`FILE_MAY_SET`: which cell, how many
texts or tokens, which prompts) are taken from the file. Everything else comes from the user: the pair and custom
code as typed now, the corpus as typed (by default `self:` for the diff, `generic:` for a lens), and the backend,
judge, LLMs, agent budgets and device as the user's own defaults. A file can thus never send a local file's text to
NDIF, pick a judge or an LLM, or spend the user's budget.
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
from tui.client.base import read_result
from tui.sessions.client import SessionClient, SessionTap
from tui.sessions.recording import SessionRecorder
from tui.sessions.source import SessionSource, load_source

REASKED = ("adl.", "readout.", "steer.", "lens.", "agent.")  # method prefixes a rerun may ask again
# The only params a session file may set: what is asked, never where data comes from or goes, what runs it or what
# it costs (corpus, backend, judge, llm, budgets, device, environment and custom code are the user's).
FILE_MAY_SET = frozenset((
    "run", "layer", "pos", "layers", "positions", "n", "k", "seed", "top_k", "source", "head", "scales", "side",
    "protocol", "method", "max_strength", "strengths", "prompts", "texts", "n_samples", "max_new_tokens",
    "temperature", "component", "top_n", "max_tokens", "window", "batch_size", "n_tokens", "examples", "topics",
    "n_topics", "modules", "factors", "chat", "mode", "patch", "ablate", "n_controls", "n_components"))
CORPUS_FIELDS = ("corpus", "generic", "ft_corpus")  # where a question read texts: the user's corpus is read instead


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


def retarget(params: dict[str, Any], base: str, ft: str, adapter: str | None, trust_remote_code: bool,
             corpus: str | None = None) -> dict[str, Any]:
    """The params a session file may set (`FILE_MAY_SET`), with the pair typed now wherever it named models, the
    user's corpus wherever it read one (`corpus`, else `generic:`: a lens reads real text, never model samples) and
    custom code only as the user allowed it; every other param is left to the engine's (the user's) default."""
    out = {k: v for k, v in params.items() if k in FILE_MAY_SET}
    if "base" in params or "ft" in params:
        out.update(base=base, ft=ft, **({"adapter": adapter} if adapter else {}))
    text_corpus = corpus if corpus and corpus != methods.AdlCompute.corpus else methods.LensCausal.generic
    out.update({k: text_corpus for k in CORPUS_FIELDS if params.get(k) is not None})
    if trust_remote_code:
        out["trust_remote_code"] = True
    return out


def counterpart_run_params(source: SessionSource, base: str, ft: str, adapter: str | None,
                           trust_remote_code: bool = False, corpus: str | None = None) -> tuple[str, dict[str, Any]]:
    """The old run id and the `adl.compute` params that make its counterpart on the new pair (on `corpus`, the
    user's: a session never picks the texts read)."""
    for action in source.actions:
        if action["method"] == methods.ADL_COMPUTE.name:
            old_run, params = read_result(methods.ADL_COMPUTE, action["result"]).run, dict(action["params"])
            break
    else:
        old_run = source.run
        request = stored_request(old_run, source.id) if old_run else None
        if request is None:
            raise StoreError(f"session {source.name!r} does not say how its run was computed",
                             "import the session (its results hold the request) or record one that computes")
        params = {k: v for k, v in request.items() if v is not None}
    return old_run, {**retarget({**params, "base": base, "ft": ft}, base, ft, adapter, trust_remote_code),
                     "corpus": corpus or methods.AdlCompute.corpus}


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
                trust_remote_code: bool = False, corpus: str | None = None,
                ) -> tuple[sessions.Session, list[Step]]:
    """Ask the engine the session's questions on (`base`, `ft`); returns the new session and the pairs."""
    old_run, compute = counterpart_run_params(source, base, ft, adapter, trust_remote_code, corpus)
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
        new_run = read_result(methods.ADL_COMPUTE, computed).run
        todo = [a for a in source.actions if a["method"] != methods.ADL_COMPUTE.name]
        for i, action in enumerate(todo, 1):
            method = action["method"]
            params = retarget(_swap(action["params"], old_run, new_run), base, ft, adapter, trust_remote_code, corpus)
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
                trust_remote_code: bool = False,
                corpus: str | None = None) -> tuple[str, str, list[Step]]:
    """Rerun session `ref` on the new pair; (old label, new label, steps)."""
    source = load_source(ref)
    new, steps = asyncio.run(rerun(source, base, ft, adapter=adapter, target=target, on_step=on_step,
                                   trust_remote_code=trust_remote_code, corpus=corpus))
    return f"{source.name}: {source.base} → {source.ft}", f"{new.name}: {new.base} → {new.ft}", steps
