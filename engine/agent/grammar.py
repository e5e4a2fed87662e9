"""The two parsers of the agent's replies: native tool calls, and the text grammar for models without
them (`CALL(tool_name: {json})` or `FINAL(description: "...")`). A reply's last CALL counts; a FINAL counts only
in a reply without a call: written beside a call it comes before that call's result (small real models echo the
hint "CALL(...) to use a tool, or FINAL(...) to give your answer" with both filled in).

Small real models rarely write either exactly, so the reading is lenient where the intent is plain: an
action inside a line or a code fence, `CALL(name, {...})`, a call or final answer cut off before its
closing brackets (closed here), single-quoted Python-style arguments, a JSON object in prose or a code
fence naming a known tool (`{"tool": "ask_model", "arguments": {...}}`), OpenAI's function-call JSON
(`{"type": "function", "function": {"name": ..., "arguments": "<JSON string>"}}`, `{"tool_calls": [...]}`),
Qwen's `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (any name: an unknown tool is then
reported as such), a final answer written as a call (`{"name": "final", "arguments": {"description": ...}}`),
or `ask_model({...})`. Nothing here raises on bad input: what still cannot be read becomes a `ParseError`
whose message tells the agent how to write it."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from engine.llm.base import ToolCall

GRAMMAR_HINT = ('end your reply with one line: CALL(tool_name: {"arg": value}) to use a tool, or '
                'FINAL(description: "...") to give your answer')

_ACTION = re.compile(r"\b(CALL|FINAL)\s*\(", re.IGNORECASE)
_NAME = re.compile(r"\s*[\"'`]?([A-Za-z_][\w.-]*)[\"'`]?\s*[:,=]?\s*")
_DESCRIPTION_KEY = re.compile(r"^\s*[\"']?description[\"']?\s*[:=]\s*", re.IGNORECASE)
_NAME_KEYS = ("tool", "name", "tool_name", "function", "action_name")
_ARG_KEYS = ("arguments", "args", "parameters", "input", "tool_input")
_CLOSERS = {"{": "}", "[": "]"}
_WRAPPER_KEYS = ("function", "function_call", "tool_call")  # OpenAI-style {"function": {"name": ..., ...}}
_FINAL_NAMES = ("final", "final_answer", "answer", "finish")
_TAGGED = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL | re.IGNORECASE)


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


def tool_key(name: str) -> str:
    """A tool name as models write it (`functions.ask_model`, `Ask-Model`) → the registry's spelling."""
    return name.strip().strip("`'\"").rsplit(".", 1)[-1].replace("-", "_").lower()


def _closed(text: str) -> str:
    """`text` with an unterminated string and unclosed brackets closed (a reply cut off mid-call)."""
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for char in text:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in _CLOSERS:
            stack.append(_CLOSERS[char])
        elif char in "}]" and stack and stack[-1] == char:
            stack.pop()
    return text + (quote or "") + "".join(reversed(stack))


def loads_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text`, read leniently (trailing text ignored, cut-off brackets closed,
    Python-style single quotes accepted); None when there is none."""
    start = text.find("{")
    if start < 0:
        return None
    body = text[start:]
    for candidate in (body, _closed(body.rstrip().rstrip(")").rstrip())):
        try:
            value, _ = json.JSONDecoder(strict=False).raw_decode(candidate)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(candidate)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                continue
        if isinstance(value, dict):
            return value
    return None


def _json_object(text: str, name: str, call_id: str | None = None) -> Call | ParseError:
    if not text.strip():
        return Call(name, {}, call_id)
    args = loads_object(text)
    if args is None:
        try:
            json.loads(text)
            problem = "must be a JSON object"
        except json.JSONDecodeError as exc:
            problem = f"are not valid JSON ({exc.msg} at char {exc.pos})"
        return ParseError(f"the arguments of {name} {problem}", name, call_id, text)
    return Call(name, args, call_id)


def _final_text(payload: str) -> str:
    """The description, read leniently: a JSON string if it is one, else the text between the quotes."""
    payload = _DESCRIPTION_KEY.sub("", payload, count=1).strip()
    if payload.startswith('"'):
        try:
            value, end = json.JSONDecoder(strict=False).raw_decode(payload)
            if isinstance(value, str) and not payload[end:].strip(" )`\n"):
                return value.strip()
        except json.JSONDecodeError:
            pass
        return payload.strip('"').strip()
    return payload.strip().strip("'").strip()


def _final(rest: str) -> Final | ParseError:
    body = rest.rstrip().rstrip("`").rstrip()
    cut = body.rfind('")')
    body = body[:cut + 1] if cut >= 0 else body.removesuffix(")")
    description = _final_text(body)
    return Final(description) if description else ParseError('FINAL needs a non-empty description: '
                                                             'FINAL(description: "...")')


def _call(rest: str) -> Call | ParseError:
    match = _NAME.match(rest)
    if not match:
        return ParseError(f"could not read the tool name of the CALL; {GRAMMAR_HINT}")
    args = rest[match.end():].rstrip().rstrip("`").rstrip()
    return _json_object(args.removesuffix(")") if "{" not in args else args, match.group(1))


def _arguments(value: Any) -> dict[str, Any] | None:
    """A call's arguments: an object, or an object encoded as a JSON string (OpenAI's `arguments`)."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return {} if not value.strip() else loads_object(value)
    return None


def _call_in(obj: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(tool name, arguments) of one JSON object written as a call, unwrapping OpenAI's envelopes."""
    calls = obj.get("tool_calls")
    if isinstance(calls, list):
        found = [c for c in (_call_in(x) for x in calls if isinstance(x, dict)) if c is not None]
        return found[-1] if found else None
    wrapped = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
    if wrapped is not None:
        return _call_in(wrapped)
    name = next((obj[k] for k in _NAME_KEYS if isinstance(obj.get(k), str)), None)
    if name is None:
        return None
    present = [k for k in _ARG_KEYS if k in obj]
    args = _arguments(obj[present[0]]) if present else {k: v for k, v in obj.items() if k not in _NAME_KEYS}
    return (name, args) if args is not None else None


def _as_action(name: str, args: dict[str, Any], known: dict[str, str], any_name: bool) -> Call | Final | None:
    """The action a parsed call names: a final answer, a known tool, or (if `any_name`) whatever it names."""
    key = tool_key(name)
    if key in _FINAL_NAMES and key not in known:
        description = args.get("description", args.get("answer"))
        return Final(description.strip()) if isinstance(description, str) and description.strip() else None
    if key in known:
        return Call(known[key], args)
    return Call(name, args) if any_name else None


def _tagged_call(text: str, known: dict[str, str]) -> Action | None:
    """The last `<tool_call>...</tool_call>` block (Qwen's format; a cut-off closing tag is allowed)."""
    blocks = [m.group(1) for m in _TAGGED.finditer(text)]
    if not blocks:
        return None
    obj = loads_object(blocks[-1])
    parsed = _call_in(obj) if obj is not None else None
    action = _as_action(*parsed, known, any_name=True) if parsed else None
    return action or ParseError('the <tool_call> block is not {"name": TOOL, "arguments": {...}} JSON; '
                                f"{GRAMMAR_HINT}", raw=blocks[-1])


def _prose_call(text: str, tool_names: Collection[str]) -> Action | None:
    """A call written without the grammar: a `<tool_call>` block, a JSON object naming a known tool
    (`{"tool": NAME, "arguments": {...}}`, OpenAI's function-call JSON) or `NAME({...})` / `NAME: {...}`;
    the last one in the text."""
    known = {tool_key(n): n for n in tool_names}
    tagged = _tagged_call(text, known)
    if tagged is not None:
        return tagged
    found: Call | Final | None = None
    for brace in (m.start() for m in re.finditer(r"\{", text)):
        obj = loads_object(text[brace:])
        parsed = _call_in(obj) if obj is not None else None
        action = _as_action(*parsed, known, any_name=False) if parsed else None
        if action is not None:
            found = action
    if found is not None or not known:
        return found
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, known)) + r")\b\s*[(:]\s*(?=\{)", re.IGNORECASE)
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    args = loads_object(text[last.end():])
    return Call(known[tool_key(last.group(1))], args) if args is not None else None


def parse_text(text: str, tool_names: Collection[str] = ()) -> Action:
    """The reply's last `CALL(...)`, else its `FINAL(...)` (which may run over several lines), else a call
    written in prose for one of `tool_names`."""
    actions = list(_ACTION.finditer(text))
    if not actions:
        prose = _prose_call(text, tool_names)
        if prose is not None:
            return prose
        if not text.strip():
            return ParseError(f"your reply was empty; {GRAMMAR_HINT}")
        return ParseError(f"your reply has no CALL or FINAL; {GRAMMAR_HINT}")
    calls = [action for action in actions if action.group(1).upper() == "CALL"]
    chosen = calls[-1] if calls else actions[-1]
    after = next((action.start() for action in actions if action.start() > chosen.start()), len(text))
    rest = text[chosen.end():after]
    return _call(rest) if calls else _final(rest)


def parse_native(calls: list[ToolCall]) -> list[Call | ParseError]:
    """Native tool calls, each kept with its id so that every call gets its own answer."""
    return [_json_object(c.arguments, c.name, c.id) for c in calls]
