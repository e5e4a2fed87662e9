"""The engine's wire protocol: JSON-RPC 2.0, one JSON object per line (UTF-8, `\\n`-terminated).

Plain Python on purpose: the TUI imports this module (and nothing else from `engine`), so it must stay free
of torch and of the rest of the engine.

Messages
    request       {"jsonrpc": "2.0", "id": 1, "method": "adl.compute", "params": {...}}
    response      {"jsonrpc": "2.0", "id": 1, "result": {...}}   or   {..., "error": {code, message, data}}
    notification  {"jsonrpc": "2.0", "method": "job.progress", "params": {"job": "j1", ...}}

Short ops answer with their result. Long ops (jobs) answer `{"job": id}` at once; the submitting client is
subscribed to the job and receives `job.progress` / `job.partial` notifications, then exactly one of
`job.done` (`{"job", "result"}`) or `job.failed` (`{"job", "error": {code, message, data}}`). Other clients
see jobs through `job.list` and follow them with `job.subscribe`. Lines longer than `MAX_MESSAGE_BYTES` are
discarded and answered with `MESSAGE_TOO_LARGE`, and a line that is not JSON with `PARSE_ERROR`, each under
the request's id when it can be read from the line's head (`request_id`). Over TCP the first request must be
`engine.auth` with the token; anything else closes the connection. Batches are not supported.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from store import jsonvalue

JSONRPC = "2.0"
MAX_MESSAGE_BYTES = 64 * 2**20
MAX_AUTH_MESSAGE_BYTES = 4096   # before a TCP client has sent its token: enough for engine.auth, nothing more

# Standard JSON-RPC 2.0 codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# difflens codes (the implementation-defined server error range).
USER_ERROR = -32000          # data: {"problem": str, "fix": str}
JOB_CANCELLED = -32001
JOB_NOT_FOUND = -32002
MESSAGE_TOO_LARGE = -32003
UNAUTHORIZED = -32004
SHUTTING_DOWN = -32005
ENGINE_FULL = -32006         # the listener already serves its most clients; sent before it hangs up
UNAVAILABLE = -32010         # client side only: cannot connect, or the transport closed

# Built-in methods (ops from the registry are the other methods).
ENGINE_AUTH = "engine.auth"            # {"token"} -> {"ok": true}; TCP only, must come first
ENGINE_STATUS = "engine.status"        # -> {"pid", "device", "models", "jobs", "socket", ...}
ENGINE_METHODS = "engine.methods"      # -> {"methods": [{"name", "long", "doc"}]}
ENGINE_HELLO = "engine.hello"          # -> {"pid", "where", "ops_loaded"}; at once, even while ops still load
ENGINE_SHUTDOWN = "engine.shutdown"    # -> {"ok": true}; running jobs are cancelled
JOB_LIST = "job.list"                  # -> {"jobs": [job summary]}
JOB_CANCEL = "job.cancel"              # {"job"} -> {"job", "state"}
JOB_RESULT = "job.result"              # {"job"} -> job summary incl. "result"/"error" when finished
JOB_SUBSCRIBE = "job.subscribe"        # {"job"?} -> job summary (+ "partials"); no job: every job

# Notifications (engine -> client).
JOB_PROGRESS = "job.progress"          # {"job", "type": "progress", "done", "total", "message", ...}
JOB_PARTIAL = "job.partial"            # {"job", "type": "partial", ...payload}
JOB_DONE = "job.done"                  # {"job", "result"}
JOB_FAILED = "job.failed"              # {"job", "error": {"code", "message", "data"}}

FINISHED_STATES = ("done", "failed", "cancelled")


# The id of a request whose line cannot be parsed (too large, cut, broken): a top-level "id" that comes before
# "params", as every request that `request` builds has it; an "id" inside params is never taken for it.
_HEAD_ID = re.compile(rb'\A\s*\{(?:\s*"(?:jsonrpc|method)"\s*:\s*"[^"\\]{0,200}"\s*,)*\s*"id"\s*:\s*'
                      rb'(-?[0-9]{1,18}|"[^"\\]{1,200}")\s*[,}]')
HEAD_BYTES = 4096


class ProtocolError(Exception):
    """A message that cannot be served; carries the JSON-RPC error to answer with, and the id of the request
    when it could be read."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None,
                 id_: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.id = id_


def request_id(line: bytes | str) -> int | str | None:
    """The id of the request on `line`, read from its head only (no parse of the whole); None if unclear."""
    head = line[:HEAD_BYTES]
    found = _HEAD_ID.match(head.encode("utf-8", "replace") if isinstance(head, str) else head)
    if found is None:
        return None
    raw = found.group(1)
    return raw[1:-1].decode("utf-8", "replace") if raw.startswith(b'"') else int(raw)


def encode(message: dict[str, Any]) -> bytes:
    """One message as one line (compact JSON, non-ASCII kept as UTF-8, newline-terminated; NaN/Infinity,
    which strict parsers reject, are sent as null)."""
    return jsonvalue.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def decode(line: bytes | str) -> dict[str, Any]:
    """Parse one line into a message object; raises `ProtocolError` for anything that is not one."""
    if len(line) > MAX_MESSAGE_BYTES:
        raise ProtocolError(MESSAGE_TOO_LARGE, too_large(MAX_MESSAGE_BYTES), too_large_data(MAX_MESSAGE_BYTES),
                            id_=request_id(line))
    try:
        message = jsonvalue.loads(line)
    except jsonvalue.JsonValueError as exc:
        raise ProtocolError(PARSE_ERROR, f"parse error: {exc}", id_=request_id(line)) from None
    if not isinstance(message, dict):
        raise ProtocolError(INVALID_REQUEST, "a message must be a JSON object (batches are not supported)")
    return message


def request(id_: int | str, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "id": id_, "method": method, "params": params or {}}


def notification(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "method": method, "params": params}


def result(id_: int | str | None, value: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "id": id_, "result": value}


def error_object(code: int, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return err


def error(id_: int | str | None, code: int, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC, "id": id_, "error": error_object(code, message, data)}


def read_frame(readline: Callable[[int], bytes], limit: int = MAX_MESSAGE_BYTES, *,
               drain: bool = True) -> bytes | None:
    """Next line from a blocking `readline(size)`; None at end of stream.

    A line whose message (the bytes before its newline) is over `limit` is reported as
    `ProtocolError(MESSAGE_TOO_LARGE)`; with `drain` it is first read up to its newline, so that the stream
    stays in sync and the reader can keep serving (without, the caller is about to hang up).
    """
    line = readline(limit + 1)
    if not line:
        return None
    if len(line) <= limit or line.endswith(b"\n"):
        return line
    id_ = request_id(line)
    while drain and line and not line.endswith(b"\n"):
        line = readline(1 << 16)
    raise ProtocolError(MESSAGE_TOO_LARGE, too_large(limit), too_large_data(limit), id_=id_)


def too_large(limit: int) -> str:
    """The one wording of a message over the size limit (engine and client)."""
    return f"message larger than {limit:,} bytes (the engine's limit)"


def too_large_data(limit: int) -> dict[str, str]:
    return {"problem": too_large(limit),
            "fix": "ask for less at once (fewer layers, texts or prompts), or pass long inputs as a file"}
