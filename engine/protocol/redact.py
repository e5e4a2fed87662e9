"""Keep API keys out of transcripts, stored runs and logs: the configured secrets are replaced wherever
they appear, and so is anything shaped like a key (error messages sometimes echo one), including the
credentials a URL can carry (`https://user:password@host`, `?api-key=...`) and an HTTP `Basic`/`Bearer`
value.

Logs are redacted as each record is made (`redact_logs`), whatever library logs it and whichever handler
writes it; the secrets of every LLM configuration made in this process are known to it (`remember`).
Plain Python: the engine and the CLI both install it."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "[redacted]"
# a Basic value is base64 (`user:password`): one capital or digit past its first letter tells it from prose
_KEY_SHAPED = re.compile(r"(sk-[A-Za-z0-9_\-]{12,}|Bearer\s+[A-Za-z0-9_\-.]{12,}"
                         r"|Basic\s+(?=[A-Za-z0-9+/]+[A-Z0-9+/])[A-Za-z0-9+/]{8,}={0,2})")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@?#]+@")
_SECRET_PARAM = re.compile(r"(?i)([?&;](?:[a-z0-9_\-]*(?:key|token|secret|password|passwd|pwd|auth|sig|signature|"
                           r"credential)[a-z0-9_\-]*)=)[^&#\s'\"]+")


def url_credentials(text: str) -> str:
    """`text` with the user:password of any URL and the values of key/token/secret-like query params masked."""
    return _SECRET_PARAM.sub(rf"\1{MASK}", _URL_USERINFO.sub(rf"\1{MASK}@", text))


def without_userinfo(url: str) -> str:
    """`url` with no `user:password@`: an HTTP client would send those as Basic auth in place of the key."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class Redactor:
    def __init__(self, secrets: tuple[str, ...] | list[str] = ()) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True))

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, MASK)
        return url_credentials(_KEY_SHAPED.sub(MASK, value))

    def obj(self, value: Any) -> Any:
        """The same JSON-able value with every string redacted (keys of dicts too)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.obj(k) if isinstance(k, str) else k: self.obj(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.obj(v) for v in value]
        return value


class StreamRedactor:
    """Redacts streamed text whose secrets may arrive split across pieces.

    The tail that could still be the start of a secret is held back until the text grows past it or the
    stream ends; the rest is emitted from the redacted whole, so a secret never leaves in fragments."""

    def __init__(self, redactor: Redactor, hold: int = 64) -> None:
        self.redactor = redactor
        self.hold = max([hold, *(len(s) for s in redactor.secrets)])
        self._raw = ""
        self._sent = 0

    def feed(self, piece: str) -> str:
        self._raw += piece
        clean = self.redactor.text(self._raw)
        out = clean[self._sent:max(self._sent, len(clean) - self.hold)]
        self._sent += len(out)
        return out

    def flush(self) -> str:
        out = self.redactor.text(self._raw)[self._sent:]
        self._raw, self._sent = "", 0
        return out


_KNOWN: set[str] = set()
_KNOWN_LOCK = threading.Lock()
_LOG_REDACTOR = Redactor()


def remember(secrets: tuple[str, ...] | list[str]) -> None:
    """Add secrets that no log record of this process may show (an LLM configuration's key, URL credentials)."""
    global _LOG_REDACTOR
    with _KNOWN_LOCK:
        if set(secrets) - _KNOWN:
            _KNOWN.update(secrets)
            _LOG_REDACTOR = Redactor(tuple(_KNOWN))


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message, exception text and stack redacted (formatted once, here)."""
    redact = _LOG_REDACTOR.text
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not fit the message: show both, as logging itself would not
        message = f"{record.msg} {record.args}"
    record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


def redact_logs() -> None:
    """Redact every log record of this process as it is made (all loggers, all handlers, any library's).
    Idempotent."""
    make = logging.getLogRecordFactory()
    if getattr(make, "redacts", False):
        return

    def redacted(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(make(*args, **kwargs))

    redacted.redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(redacted)
