"""The two parsers of the agent's replies: native tool calls, and the text grammar for models without
them (the last line is `CALL(tool_name: {json})` or `FINAL(description: "...")`).

Nothing here raises on bad input: a reply that cannot be read becomes a `ParseError` whose message tells
the agent how to write it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from engine.llm.base import ToolCall

GRAMMAR_HINT = ('end your reply with one line: CALL(tool_name: {"arg": value}) to use a tool, or '
                'FINAL(description: "...") to give your answer')

_CALL = re.compile(r"^CALL\(\s*([A-Za-z_][\w.-]*)\s*(?::\s*(.*?))?\s*\)$", re.DOTALL)
_FINAL = re.compile(r"^FINAL\(\s*(?:description\s*[:=]\s*)?(.*?)\s*\)$", re.DOTALL)


@dataclass(frozen=True)
class Call:
    name: str
    args: dict[str, Any]
    call_id: str | None = None


@dataclass(frozen=True)
class Final:
    description: str


@dataclass(frozen=True)
class ParseError:
    message: str
    name: str | None = None
    call_id: str | None = None
    raw: str | None = None


Action = Call | Final | ParseError


def _clean(line: str) -> str:
    return line.strip().strip("`").strip()


def _json_object(text: str, name: str, call_id: str | None = None) -> Call | ParseError:
    if not text.strip():
        return Call(name, {}, call_id)
    try:
        args = json.loads(text)
    except json.JSONDecodeError as exc:
        return ParseError(f"the arguments of {name} are not valid JSON ({exc.msg} at char {exc.pos})",
                          name, call_id, text)
    if not isinstance(args, dict):
        return ParseError(f"the arguments of {name} must be a JSON object", name, call_id, text)
    return Call(name, args, call_id)


def _final_text(payload: str) -> str:
    """The description, read leniently: a JSON string if it is one, else the text between the quotes."""
    if payload.startswith('"'):
        try:
            value = json.loads(payload, strict=False)
            if isinstance(value, str):
                return value.strip()
        except json.JSONDecodeError:
            pass
        return payload.strip('"').strip()
    return payload.strip()


def parse_text(text: str) -> Action:
    """Read the last `CALL(...)`/`FINAL(...)` line (a FINAL may run over several lines)."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _clean(line).startswith(("CALL(", "FINAL("))]
    if not starts:
        return ParseError(f"your reply has no CALL or FINAL line; {GRAMMAR_HINT}")
    tail = _clean("\n".join(lines[starts[-1]:]).strip())
    if tail.startswith("FINAL("):
        match = _FINAL.match(tail)
        if not match:
            return ParseError('could not read the FINAL line; write FINAL(description: "...") as the last line')
        description = _final_text(match.group(1))
        return Final(description) if description else ParseError("FINAL needs a non-empty description")
    match = _CALL.match(tail)
    if not match:
        return ParseError(f"could not read the CALL line; {GRAMMAR_HINT}")
    return _json_object(match.group(2) or "", match.group(1))


def parse_native(calls: list[ToolCall]) -> list[Call | ParseError]:
    """Native tool calls, each kept with its id so that every call gets its own answer."""
    return [_json_object(c.arguments, c.name, c.id) for c in calls]
