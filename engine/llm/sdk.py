"""The OpenAI and Anthropic SDKs share one generated client shape (`APIStatusError`, `APIConnectionError`,
`max_retries`, `timeout`); their backends share what follows from it: construction, and `with_retries` with
one classification of transient errors and one one-line refusal."""

from __future__ import annotations

import re
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from engine.errors import UserError
from engine.llm.base import ContextOverflow, EventSink
from engine.llm.config import TIMEOUT_FIX, LLMConfig
from engine.llm.retry import Transient, with_retries
from engine.protocol.redact import Redactor

T = TypeVar("T")
FIXES = {401: "check the API key", 403: "check the API key and its permissions",
         404: "check the model name and the base URL",
         400: "check the model name; if the endpoint has no tool calling, pass protocol text"}
_OVERFLOW = re.compile(r"context[ _-]?(length|window|size)|maximum context|too many tokens|prompt is too long|"
                       r"n_ctx|exceeds? the (model'?s? )?(max|context)", re.IGNORECASE)


def is_context_overflow(status: int, message: str) -> bool:
    """What OpenAI, vLLM, llama.cpp, Ollama and Anthropic answer to a request longer than the context window."""
    return status in (400, 413, 422) and bool(_OVERFLOW.search(message))


class SdkChat:
    """Base of the SDK backends: the client (the SDK's own retries off), the label and the key's redactor."""

    supports_tools = True
    sdk: ModuleType
    client_class: Callable[..., Any]

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.label = config.label()
        self.secrets = config.secrets
        self._redactor = Redactor(self.secrets)
        self._client = self.client_class(api_key=config.api_key or "not-needed", base_url=config.client_url,
                                         default_query=config.client_query,
                                         timeout=config.timeout_s, max_retries=0)

    def _with_retries(self, call: Callable[[], T], on_event: EventSink | None) -> T:
        return sdk_call(call, self.sdk, label=self.label, max_retries=self.config.max_retries, on_event=on_event,
                        redact=self._redactor.text, timeout_s=self.config.timeout_s)


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def sdk_call(call: Callable[[], T], sdk: ModuleType, *, label: str, max_retries: int,
             on_event: EventSink | None, redact: Callable[[str], str], timeout_s: float | None = None) -> T:
    """`with_retries` for an OpenAI-shaped SDK: 429, 5xx (529 overloaded), timeouts and dropped connections
    are tried again; a timeout that persists says so, after how long, and which setting raises the limit; a
    request over the context window is `ContextOverflow`; any other HTTP refusal a one-line `UserError`
    naming the fix."""

    def classify(exc: Exception) -> Transient:
        if isinstance(exc, sdk.APITimeoutError):
            waited = f" after {timeout_s:g} s" if timeout_s is not None else ""
            return Transient(True, f"the request timed out{waited} (the LLM timeout)", fix=TIMEOUT_FIX)
        if isinstance(exc, sdk.APIStatusError):
            status = exc.status_code
            return Transient(status == 429 or status >= 500, f"HTTP {status}: {exc.message}", _retry_after(exc))
        if isinstance(exc, sdk.APIConnectionError):
            return Transient(True, f"{type(exc).__name__}: {exc}")
        return Transient(False, str(exc))

    try:
        return with_retries(call, classify, label=label, max_retries=max_retries, on_event=on_event, redact=redact)
    except sdk.APIStatusError as exc:
        if is_context_overflow(exc.status_code, str(exc.message)):
            raise ContextOverflow(f"{label}: the request is longer than the model's context window "
                                  f"({redact(exc.message)[:200]})", "shorten the history or use a model with a "
                                  "longer context") from None
        raise UserError(f"{label} refused the request: HTTP {exc.status_code} {redact(exc.message)}",
                        FIXES.get(exc.status_code, "check the endpoint")) from None
