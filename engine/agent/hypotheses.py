"""The agent's hypothesis board, as the reference agent's `hypothesis_tracking` tool keeps it
(science-of-finetuning/diffing-toolkit `src/diffing/utils/agents/hypothesis_tracker.py`): `add` one or more
hypotheses (each gets the next id, status `active`), `update` one by id to active/confirmed/rejected with
its reasoning, `get` the board. Every action answers with the whole board; after each `ask_model` result
the agent is reminded of the hypotheses still active (the reference's `get_tool_result_addendum`).

Arguments are read leniently (a list under `hypothesis`, an id as a string, any case of a status), since
small models write them so; what still cannot be read is a `ToolArgError` the agent sees and can fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("add", "update", "get")
STATUSES = ("active", "confirmed", "rejected")
REMIND_AFTER = "ask_model"  # the reference appends the reminder to this tool's results only


class BoardError(ValueError):
    """An action the board cannot apply; the message goes back to the agent."""


@dataclass
class HypothesisBoard:
    entries: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)  # what the last action added or updated

    def board(self) -> dict[str, Any]:
        return {"hypotheses": [dict(h) for h in self.entries]}

    def apply(self, args: dict[str, Any]) -> dict[str, Any]:
        """One action; the whole board back."""
        action = str(args.get("action", "")).strip().lower()
        if action not in ACTIONS:
            raise BoardError(f"'action' must be one of {', '.join(ACTIONS)}, got {args.get('action')!r}")
        self.changed = []
        if action == "add":
            self._add(args)
        elif action == "update":
            self._update(args)
        return self.board()

    def _add(self, args: dict[str, Any]) -> None:
        raw = args.get("hypotheses", args.get("hypothesis"))
        items = raw if isinstance(raw, list) else [raw]
        texts = [h for h in items if isinstance(h, str) and h.strip()]
        if not items or len(texts) != len(items):
            raise BoardError("add needs 'hypothesis' (a non-empty string) or 'hypotheses' (a list of them)")
        for text in texts:
            entry = {"id": len(self.entries) + 1, "hypothesis": text.strip(), "status": "active", "reasoning": ""}
            self.entries.append(entry)
            self.changed.append(entry)

    def _update(self, args: dict[str, Any]) -> None:
        try:
            wanted = int(str(args.get("id")).strip().lstrip("#[").rstrip("]"))
        except ValueError:
            raise BoardError(f"update needs 'id' (one of {[h['id'] for h in self.entries]}), "
                             f"got {args.get('id')!r}") from None
        status = str(args.get("status", "")).strip().lower()
        if status not in STATUSES:
            raise BoardError(f"update needs 'status', one of {', '.join(STATUSES)}, got {args.get('status')!r}")
        matched = [h for h in self.entries if h["id"] == wanted]
        if not matched:
            raise BoardError(f"no hypothesis with id={wanted}; ids on the board: {[h['id'] for h in self.entries]}")
        matched[0].update(status=status, reasoning=str(args.get("reasoning", "") or ""))
        self.changed.append(matched[0])

    def active(self) -> list[dict[str, Any]]:
        return [h for h in self.entries if h["status"] == "active"]

    def reminder(self, tool_name: str) -> str:
        """The reference's addendum after an `ask_model` result while hypotheses are active ('' otherwise)."""
        active = self.active()
        if tool_name != REMIND_AFTER or not active:
            return ""
        lines = "\n".join(f"  [{h['id']}] {h['hypothesis']}" for h in active)
        return f"Active hypotheses:\n{lines}\nUpdate hypothesis_tracking with your findings."
