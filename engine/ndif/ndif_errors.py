"""NDIF failures as one-line `UserError`s: no key, an unavailable model, a quota (HTTP 429), a timeout,
an unreachable host, or a job that failed on the server."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from engine.errors import UserError
from engine.ndif.access import KEY_ENV, execution_target, host, require_api_key

TIMEOUT_ENV = "DIFFLENS_NDIF_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 900.0


def _status_code(exc: BaseException) -> int | None:
    """The HTTP status behind an error, wherever nnsight or websocket-client put it."""
    for err in (exc, exc.__cause__, exc.__context__):
        response = getattr(err, "response", None)
        code = getattr(response, "status_code", None) or getattr(err, "status_code", None)
        if isinstance(code, int):
            return code
    return None


def _is_timeout(exc: BaseException) -> bool:
    import httpx
    import websocket

    kinds = (TimeoutError, socket.timeout, httpx.TimeoutException, websocket.WebSocketTimeoutException)
    return any(isinstance(err, kinds) for err in (exc, exc.__cause__, exc.__context__))


def translate(exc: BaseException, timeout_s: float) -> UserError | None:
    """The user-facing error for an exception out of a remote trace; None when it is not NDIF's."""
    import httpx
    import websocket
    from nnsight.intervention.backends.remote import RemoteError

    if not isinstance(exc, (RemoteError, httpx.HTTPError, websocket.WebSocketException, OSError)):
        return None
    text = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    lowered = text.lower()
    code = _status_code(exc)
    if _is_timeout(exc):
        return UserError(f"NDIF did not answer within {timeout_s:.0f} s (timeout)",
                         f"try again later, or raise {TIMEOUT_ENV}; `difflens ndif models` shows what is up")
    if code == 429 or "429" in lowered or "quota" in lowered or "rate limit" in lowered:
        return UserError(f"NDIF refused the request: quota or rate limit reached (HTTP 429): {text}",
                         "wait and retry, or send fewer, smaller requests (--ndif-max-rows)")
    if code in (401, 403) or "api key" in lowered or "unauthorized" in lowered:
        return UserError(f"NDIF rejected the API key (HTTP {code or 401})", f"check {KEY_ENV}")
    if code == 404 or any(w in lowered for w in ("not deployed", "not found", "not running", "unavailable")):
        return UserError(f"the model is not available on NDIF: {text}",
                         "run `difflens ndif models` for the models it serves, or use --backend local")
    if isinstance(exc, (httpx.ConnectError, websocket.WebSocketException, ConnectionError, socket.gaierror)):
        return UserError(f"cannot reach NDIF at {host()}: {text}", "check the network (and NDIF_HOST)")
    if isinstance(exc, RemoteError):
        return UserError(f"the NDIF job failed: {text}", "check the model and the request; run with --backend local "
                         "on a small model to compare")
    return None


def timeout_s() -> float:
    return float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)


@contextlib.contextmanager
def ndif_errors(active: bool = True) -> Iterator[None]:
    """Around remote traces: refuse early without a key, bound the websocket handshake by the timeout (HTTP
    waits are bounded by nnsight; its wait for a queued job has no deadline), hide nnsight's live status
    line (progress is reported per request instead) and turn NDIF's failures into one-line errors."""
    if not active:
        yield
        return
    import websocket
    from nnsight import CONFIG

    if execution_target() is True:
        require_api_key()
    limit = timeout_s()
    before_timeout, before_logging = websocket.getdefaulttimeout(), CONFIG.APP.REMOTE_LOGGING
    websocket.setdefaulttimeout(limit)
    CONFIG.APP.REMOTE_LOGGING = False
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        error = translate(exc, limit)
        if error is None:
            raise
        raise error from exc
    finally:
        websocket.setdefaulttimeout(before_timeout)
        CONFIG.APP.REMOTE_LOGGING = before_logging
