"""Keep API keys out of transcripts, stored runs and logs: the configured secrets are replaced wherever
they appear, and so is anything shaped like a key (error messages sometimes echo one), including the
credentials a URL can carry (`https://user:password@host`, `?api-key=...`)."""

from __future__ import annotations

import re
from typing import Any

MASK = "[redacted]"
_KEY_SHAPED = re.compile(r"(sk-[A-Za-z0-9_\-]{12,}|Bearer\s+[A-Za-z0-9_\-.]{12,})")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@?#]+@")
_SECRET_PARAM = re.compile(r"(?i)([?&;](?:[a-z0-9_\-]*(?:key|token|secret|password|passwd|pwd|auth|sig|signature|"
                           r"credential)[a-z0-9_\-]*)=)[^&#\s'\"]+")


def url_credentials(text: str) -> str:
    """`text` with the user:password of any URL and the values of key/token/secret-like query params masked."""
    return _SECRET_PARAM.sub(rf"\1{MASK}", _URL_USERINFO.sub(rf"\1{MASK}@", text))


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
