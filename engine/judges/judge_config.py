"""Which judge grades the method's numbers, resolved once: the explicit `--judge` (the `judge` op param), else
`DIFFLENS_JUDGE`, else `model` of the `[judge]` table of `$DIFFLENS_HOME/config.toml`, else offline.

```toml
[judge]
model = "openai:gpt-4.1-mini"        # or anthropic:MODEL, local:SPEC, offline
timeout_s = 30                       # any [llm] key (base_url, api_key, max_retries, ...) may be overridden
```

There is no fallback to the agent's `[llm]` model: a judge changes cached numbers and costs one call per
graded item (hundreds per report), so it is chosen on purpose. Its endpoint, key and limits do come from
the same place as the agent's (`engine/llm/config.py`), inside the engine process."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from engine.judges.client import JudgeClient
from engine.llm import LLMConfig, make_llm, resolve_config
from engine.llm.config import read_config_file

JUDGE_ENV = "DIFFLENS_JUDGE"
OFFLINE = "offline"
KINDS = ("coherence", "relevance", "patchscope")
OFFLINE_LABELS = {"coherence": "offline: perplexity + repetition rule",
                  "relevance": "offline: MiniLM cosine to the description",
                  "patchscope": "offline: token stability across scales"}


@dataclass
class Judge:
    """The configured judge; `config` None means the offline stand-ins."""

    config: LLMConfig | None = None

    @property
    def offline(self) -> bool:
        return self.config is None

    @property
    def identity(self) -> str:
        """Backend and model (never a URL or a key): what cache keys and reports name."""
        return OFFLINE if self.config is None else f"{self.config.provider}:{self.config.model}"

    def label(self, kind: str) -> str:
        """Who produced the numbers of `kind` (coherence, relevance, patchscope)."""
        return OFFLINE_LABELS[kind] if self.config is None else self.identity

    def labels(self) -> dict[str, str]:
        return {kind: self.label(kind) for kind in KINDS}

    def key(self) -> dict[str, Any]:
        """The judge's part of a cache key: empty offline, so caches from before judges existed still hit."""
        return {} if self.config is None else {"judge": self.identity}

    @cached_property
    def complete(self) -> JudgeClient:
        """The endpoint as `complete(prompt) -> str` (raises `Ungraded`); only for an LLM judge."""
        if self.config is None:
            raise ValueError("the offline judge has no endpoint")
        return JudgeClient(make_llm(self.config))

    @cached_property
    def complete_cold(self) -> JudgeClient:
        """The same endpoint at temperature 0 (the reference's retry of an unreadable coherence verdict)."""
        if self.config is None:
            raise ValueError("the offline judge has no endpoint")
        return JudgeClient(make_llm(replace(self.config, temperature=0.0)))


def judge_choice(explicit: str | None = None) -> str:
    """The judge spec in force: explicit, environment, config file, offline (in that order)."""
    chosen = explicit or os.environ.get(JUDGE_ENV) or read_config_file("judge").get("model") or OFFLINE
    return str(chosen).strip()


def resolve_judge(explicit: str | None = None) -> Judge:
    """The `Judge` for a spec (`openai:MODEL`, `anthropic:MODEL`, `local:SPEC`, `offline`); a judge without a key
    or endpoint is refused in one line by the LLM config's own check."""
    choice = judge_choice(explicit)
    if choice == OFFLINE:
        return Judge()
    return Judge(resolve_config(choice, section="judge"))
