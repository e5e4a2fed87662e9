"""A saved session as replay sees it, from the store or straight from a session file, and its answers.

`load_source` reads a session by name, id or file path; `Answers` indexes its finished actions by method and
params (the latest wins), which is what the session client consults before (or instead of) an engine. Params are
compared as the method reads them (each default filled in), so a call recorded with a default left out answers
the same call sent with that default written, and back.
Nothing here needs torch or an engine: the recorded result JSON is the answer.
"""

from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.protocol import methods
from engine.protocol.params import ParamsError
from engine.protocol.results import AdlSummary
from store import bundle, sessions
from store.hashing import canonical_json


@dataclass(frozen=True)
class SessionSource:
    """One session's content, wherever it was read from (`path` set for a session file)."""

    id: str
    name: str
    run: str
    base: str
    ft: str
    ui: dict[str, Any]
    actions: list[dict[str, Any]]
    notes: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None

    @property
    def last(self) -> dict[str, dict[str, Any]]:
        """The newest finished action of each method (what the panes showed last)."""
        out: dict[str, dict[str, Any]] = {}
        for action in self.actions:
            out[action["method"]] = action
        return out


def is_session_file(ref: str) -> bool:
    return ref.endswith(bundle.EXTENSION) or Path(ref).is_file()


def load_source(ref: str) -> SessionSource:
    """A session by store name/id, or a `.difflens` file (verified, never imported by reading it)."""
    if is_session_file(ref):
        return from_bundle(bundle.read_bundle(Path(ref)), Path(ref))
    found = sessions.get(ref)
    return SessionSource(id=found.id, name=found.name, run=found.run, base=found.base, ft=found.ft, ui=found.ui,
                         actions=sessions.actions(found.id), notes=sessions.notes(found.id))


def from_bundle(data: bundle.Bundle, path: Path) -> SessionSource:
    s = data.session
    done = [sessions.decode_action(a) for a in sorted(data.actions, key=lambda a: a["seq"])
            if a["status"] == sessions.DONE]
    notes = [{**n, "cell": json.loads(n["cell"] or "{}")} for n in data.notes]
    return SessionSource(id=s["id"], name=s["name"], run=s["run"] or "", base=s["base"] or "", ft=s["ft"] or "",
                         ui=json.loads(s["ui"] or "{}"), actions=done, notes=notes, path=path)


def call_key(method: str, params: dict[str, Any]) -> tuple[str, str]:
    """A call as the engine reads it: its params with every default written (as sent, for unknown methods or
    params the method would refuse)."""
    known = methods.BY_NAME.get(method)
    if known is not None:
        with contextlib.suppress(ParamsError):
            params = known.params.from_json(params).to_json()
    return method, canonical_json(params)


class Answers:
    """Recorded answers by (method, params as the engine reads them); the latest recording of a call wins."""

    def __init__(self, actions: list[dict[str, Any]]) -> None:
        self._by_call: dict[tuple[str, str], dict[str, Any]] = {}
        self._summaries: dict[str, AdlSummary] = {}
        for action in actions:
            if action.get("result") is None:
                continue
            self._by_call[call_key(action["method"], action["params"])] = action
            if action["method"] == methods.ADL_SUMMARY.name:
                with contextlib.suppress(ParamsError):  # a summary of an unreadable shape opens no run
                    summary = methods.ADL_SUMMARY.result.from_json(action["result"])
                    self._summaries[summary.run] = summary

    def find(self, method: str, params: dict[str, Any] | None) -> dict[str, Any] | None:
        """A deep copy of the recorded action for exactly this call, or None."""
        hit = self._by_call.get(call_key(method, params or {}))
        return copy.deepcopy(hit) if hit is not None else None

    def runs(self) -> list[dict[str, Any]]:
        """The runs this session opened, in `adl.runs` shape."""
        return [{"run": s.run, "base": s.base, "ft": s.ft, "corpus": s.corpus, "n": s.n, "k": s.k}
                for s in self._summaries.values()]
