"""Which LLM the agent talks to, from (in order) the explicit `--llm`, the environment, and the private
config file `$DIFFLENS_HOME/config.toml`:

```toml
[llm]
model = "openai:gpt-4.1-mini"        # or anthropic:MODEL, local:SPEC
base_url = "https://openrouter.ai/api/v1"
api_key = "..."
timeout_s = 60                       # or DIFFLENS_LLM_TIMEOUT, or --llm-timeout
price_in = 0.4                       # USD per million tokens, for the cost column
price_out = 1.6
```

A `[judge]` table (see `engine/judges/judge_config.py`) names the judge's model and may override any `[llm]` key.
The file may hold a key, so one that others can read is refused rather than used."""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from engine.errors import UserError
from engine.llm.redact import url_credentials
from store import paths

PROVIDERS = ("openai", "anthropic", "local")
DEFAULT_TIMEOUT_S = 120.0
TIMEOUT_ENV = "DIFFLENS_LLM_TIMEOUT"
TIMEOUT_FIX = f"raise it with --llm-timeout SECONDS, {TIMEOUT_ENV}, or timeout_s under [llm] in config.toml"


@dataclass(frozen=True)
class LLMConfig:
    provider: str
    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_retries: int = 5
    temperature: float | None = None
    max_tokens: int = 2048
    price_in: float | None = None
    price_out: float | None = None

    def label(self) -> str:
        where = f" @ {url_credentials(self.base_url)}" if self.base_url else ""
        return f"{self.provider}:{self.model}{where}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never be shown: the key, and any credentials inside the base URL."""
        found = [self.api_key or ""]
        if self.base_url:
            parts = urlsplit(self.base_url)
            found += [unquote(parts.username or ""), unquote(parts.password or "")]
            found += [v for k, v in parse_qsl(parts.query) if url_credentials(f"?{k}=x") != f"?{k}=x"]
        return tuple(s for s in found if s)


def config_path() -> Path:
    return paths.home() / "config.toml"


def read_config_file(section: str = "llm") -> dict[str, Any]:
    """One table (`[llm]` by default) of the config file; refuses a file that group or others can read."""
    path = config_path()
    if not path.exists():
        return {}
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(f"{path} is readable by other users and may hold an API key",
                        f"run `chmod 600 {path}`")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path} is not valid TOML ({exc})", "fix or remove the file") from exc
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise UserError(f"{path}: [{section}] must be a table", f"write the settings under a [{section}] header")
    return table


def split_llm(text: str) -> tuple[str, str]:
    """`openai:gpt-4o` → (openai, gpt-4o); a bare model name means an OpenAI-compatible endpoint."""
    provider, sep, model = text.strip().partition(":")
    if not sep or provider not in PROVIDERS:
        provider, model = "openai", text.strip()
    if not model:
        raise UserError(f"LLM {text!r} names no model", "pass openai:MODEL, anthropic:MODEL or local:SPEC")
    return provider, model


def _number(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise UserError(f"LLM setting {name} must be a number, got {value!r}", f"fix {name}") from exc


class NoLLMConfigured(UserError):
    """Nothing names an LLM: a caller that knows the run can offer the offline commands for it."""


def _timeout(explicit: float | None, env: str | None, file: Any) -> float:
    """Seconds one LLM request may take: `--llm-timeout`, else DIFFLENS_LLM_TIMEOUT, else the file's timeout_s."""
    for value, name in ((explicit, "--llm-timeout"), (env, TIMEOUT_ENV), (file, "timeout_s")):
        seconds = _number(value, name)
        if seconds is not None:
            if seconds <= 0:
                raise UserError(f"the LLM timeout ({name}) must be positive, got {value!r}", f"fix {name}")
            return seconds
    return DEFAULT_TIMEOUT_S


def resolve_config(llm: str | None = None, *, temperature: float | None = None,
                   max_tokens: int | None = None, section: str = "llm", timeout_s: float | None = None) -> LLMConfig:
    """The configured LLM; one clear `UserError` when nothing is configured. `section` other than `llm`
    (the judge's) reads that table over `[llm]`, so a judge can have its own endpoint, key and timeout."""
    env = os.environ
    file = read_config_file() | (read_config_file(section) if section != "llm" else {})
    choice = llm or env.get("DIFFLENS_LLM_MODEL") or file.get("model")
    if not choice:
        raise NoLLMConfigured("no LLM is configured for the agent",
                              "pass --llm openai:MODEL (with OPENAI_API_KEY), anthropic:MODEL (with "
                              "ANTHROPIC_API_KEY) or local:SPEC, or set DIFFLENS_LLM_MODEL; "
                              "`difflens agent RUN --keywords` works offline")
    provider, model = split_llm(str(choice))
    base_url = env.get("DIFFLENS_LLM_BASE_URL") or file.get("base_url") or None
    provider_key = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}.get(provider)
    api_key = (env.get("DIFFLENS_LLM_API_KEY") or (env.get(provider_key) if provider_key else None)
               or file.get("api_key") or None)
    if provider != "local" and not api_key and not base_url:
        raise UserError(f"no API key for {provider}:{model}",
                        f"set {provider_key} or DIFFLENS_LLM_API_KEY, or api_key in {config_path()} (mode 600)")
    return LLMConfig(
        provider=provider, model=model, base_url=None if provider == "local" else base_url,
        api_key=api_key, timeout_s=_timeout(timeout_s, env.get(TIMEOUT_ENV), file.get("timeout_s")),
        max_retries=int(5 if (retries := _number(file.get("max_retries"), "max_retries")) is None else retries),
        temperature=temperature,
        max_tokens=max_tokens or int(_number(file.get("max_tokens"), "max_tokens") or 2048),
        price_in=_number(env.get("DIFFLENS_LLM_PRICE_IN", file.get("price_in")), "price_in"),
        price_out=_number(env.get("DIFFLENS_LLM_PRICE_OUT", file.get("price_out")), "price_out"))
