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

import math
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from engine.errors import UserError
from engine.protocol.redact import remember, url_credentials, without_userinfo
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

    def __post_init__(self) -> None:
        remember(self.secrets)  # no log record of this process may show them, whichever library logs

    @property
    def client_url(self) -> str | None:
        """The base URL an HTTP client gets: no `user:password@` (it would be sent as Basic auth in place of
        the configured key, and logged with every request) and no query (see `client_query`)."""
        return urlunsplit(urlsplit(without_userinfo(self.base_url))._replace(query="")) if self.base_url else None

    @property
    def client_query(self) -> dict[str, str] | None:
        """The base URL's query params (e.g. an endpoint's `api-key`), sent with every request: the SDKs join
        paths onto the base URL as text, so a query left in it would end up inside the path."""
        return dict(parse_qsl(urlsplit(self.base_url).query)) or None if self.base_url else None

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
    for name, value in table.items():
        _check_setting(f"{path}: [{section}] {name}", name, value)
    return table


TEXT_SETTINGS = ("model", "base_url", "api_key")
NUMBER_SETTINGS = {"timeout_s": (0.1, 86_400.0), "max_retries": (0, 100), "max_tokens": (1, 1_000_000),
                   "price_in": (0.0, 1e6), "price_out": (0.0, 1e6)}  # (least, most); an int bound: whole numbers


def _check_setting(where: str, name: str, value: Any) -> None:
    """A config setting of a known name and kind, a number within its bounds (one line naming it otherwise)."""
    known = ", ".join((*TEXT_SETTINGS, *NUMBER_SETTINGS))
    if name in TEXT_SETTINGS:
        if not isinstance(value, str):
            raise UserError(f"{where} must be text, got {type(value).__name__}", f'write {name} = "..."')
        return
    if name not in NUMBER_SETTINGS:
        raise UserError(f"{where}: unknown setting", f"known settings: {known} (the provider goes in model, "
                                                     f"e.g. model = \"openai:gpt-4o\")")
    _number(value, name, where)


def _unknown_provider(text: str) -> str | None:
    """The `name` of `name:model` when it can only be a provider difflens lacks: alphabetic, and a model with no
    further colon (`llama3:8b` and OpenAI's `ft:...:...` ids are model ids, not providers)."""
    prefix, sep, rest = text.strip().partition(":")
    return prefix if sep and rest and prefix.isalpha() and prefix not in PROVIDERS and ":" not in rest else None


def split_llm(text: str) -> tuple[str, str]:
    """`openai:gpt-4o` → (openai, gpt-4o); a bare model name means an OpenAI-compatible endpoint."""
    provider, sep, model = text.strip().partition(":")
    if not sep or provider not in PROVIDERS:
        provider, model = "openai", text.strip()
    if not model:
        raise UserError(f"LLM {text!r} names no model", "pass openai:MODEL, anthropic:MODEL or local:SPEC")
    return provider, model


def _number(value: Any, name: str, where: str = "", label: str | None = None) -> float | None:
    """A numeric LLM setting within its `NUMBER_SETTINGS` bounds (None when not set); `label` is where the user
    set it when that is not the config key `name` (a flag, an environment variable)."""
    if value is None or value == "":
        return None
    where = where or f"LLM setting {label or name}"
    least, most = NUMBER_SETTINGS[name]
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not least <= number <= most or (isinstance(most, int) and not number.is_integer()):
        kind = "a whole number" if isinstance(most, int) else "a number"
        raise UserError(f"{where} must be {kind} from {least:g} to {most:g}, got {str(value)[:40]!r}",
                        f"fix {label or name}")
    return number


class NoLLMConfigured(UserError):
    """Nothing names an LLM: a caller that knows the run can offer the offline commands for it."""


def _timeout(explicit: float | None, env: str | None, file: Any) -> float:
    """Seconds one LLM request may take: `--llm-timeout`, else DIFFLENS_LLM_TIMEOUT, else the file's timeout_s."""
    for value, name in ((explicit, "--llm-timeout"), (env, TIMEOUT_ENV), (file, "timeout_s")):
        seconds = _number(value, "timeout_s", label=name)  # bounded like the config key (positive, ≤ a day)
        if seconds is not None:
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
    if not base_url and (unknown := _unknown_provider(str(choice))):  # it would go to OpenAI as a model id
        raise UserError(f"unknown LLM provider {unknown!r} in {str(choice)!r}",
                        f"use {', '.join(PROVIDERS)} (an OpenAI-compatible server: openai:MODEL with base_url)")
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
