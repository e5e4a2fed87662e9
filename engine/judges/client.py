"""`complete(prompt) -> str` for the judges over any chat backend, where a failed call is one ungraded item.

The backend already retried (429, 5xx, timeouts); what still fails becomes `Ungraded` with a redacted one-line
reason. After `MAX_FAILURES` failures in a row the endpoint is taken as down and later items are marked
ungraded at once, so a dead judge costs one round of retries, not one per item of a 300-cell report."""

from __future__ import annotations

from engine.errors import JobCancelled, Ungraded
from engine.llm.base import ChatLLM
from engine.protocol.redact import Redactor

MAX_FAILURES = 3


class JudgeClient:
    """One judge endpoint; call it with a prompt (and a system prompt), get the reply text or `Ungraded`."""

    def __init__(self, llm: ChatLLM, max_failures: int = MAX_FAILURES) -> None:
        self.llm = llm
        self.max_failures = max_failures
        self.failures = 0
        self.last_reason = ""
        self._redact = Redactor(llm.secrets).text

    def __call__(self, prompt: str, system: str | None = None) -> str:
        if self.failures >= self.max_failures:
            raise Ungraded(f"judge skipped after {self.failures} failed calls in a row (last: {self.last_reason})")
        try:
            reply = self.llm.chat([*([{"role": "system", "content": system}] if system else []),
                                   {"role": "user", "content": prompt}])
        except JobCancelled:
            raise
        except Exception as exc:  # any failure of the endpoint is this item's "ungraded", never a crash
            self.failures += 1
            self.last_reason = " ".join(self._redact(str(exc) or type(exc).__name__).split())[:200]
            raise Ungraded(f"judge call failed: {self.last_reason}") from exc
        self.failures = 0
        return reply.text
