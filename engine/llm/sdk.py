"""The OpenAI and Anthropic SDKs share one generated client shape (`APIStatusError`, `APIConnectionError`,
`max_retries`, `timeout`); their backends share what follows from it: construction, and `with_retries` with
one classification of transient errors and one one-line refusal."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from engine.errors import UserError
from engine.llm.base import EventSink
from engine.llm.config import LLMConfig
from engine.llm.retry import Transient, with_retries
from engine.protocol.redact import Redactor

T = TypeVar("T")
FIXES = {401: "check the API key", 403: "check the API key and its permissions",
         404: "check the model name and the base URL",
         400: "check the model name; if the endpoint has no tool calling, pass protocol text"}


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
                        redact=self._redactor.text)


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def sdk_call(call: Callable[[], T], sdk: ModuleType, *, label: str, max_retries: int,
             on_event: EventSink | None, redact: Callable[[str], str]) -> T:
    """`with_retries` for an OpenAI-shaped SDK: 429, 5xx (529 overloaded) and dropped connections are tried
    again; any other HTTP refusal becomes a one-line `UserError` naming the fix."""

    def classify(exc: Exception) -> Transient:
        if isinstance(exc, sdk.APIStatusError):
            status = exc.status_code
            return Transient(status == 429 or status >= 500, f"HTTP {status}: {exc.message}", _retry_after(exc))
        if isinstance(exc, sdk.APIConnectionError):
            return Transient(True, f"{type(exc).__name__}: {exc}")
        return Transient(False, str(exc))

    try:
        return with_retries(call, classify, label=label, max_retries=max_retries, on_event=on_event, redact=redact)
    except sdk.APIStatusError as exc:
        raise UserError(f"{label} refused the request: HTTP {exc.status_code} {redact(exc.message)}",
                        FIXES.get(exc.status_code, "check the endpoint")) from None
