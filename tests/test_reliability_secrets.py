"""Secrets through a real background engine: the API key comes from the engine's environment or its 0600
config file only, and after an agent run against the scripted OpenAI-compatible server (which echoes the key
back in its replies) the key is nowhere — not in DIFFLENS_HOME (store, sessions, transcripts, any HTML), not
in the engine's log or runtime files, not in what the client received. The in-process checks of the same
(transcript, log records, streamed tokens) are in test_agent.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.agent_llm_server import ScriptedLLMServer
from tests.engine_helpers import engine_cli, engine_env, short_dir
from tests.test_agent import CAKE_ENV, PROMPT
from tui.client import connect

pytestmark = pytest.mark.reliability

# Not shaped like an OpenAI key, so only the configured-secret redaction (not the key-shaped regex) hides it.
CANARY = "canary-difflens-reliability-7f3a9c1e5b2d4e6f"


def script() -> list[dict[str, Any]]:
    return [{"status": 429},
            {"text": f"Echoing the key {CANARY} back.", "tool_calls": [
                ("record_hypothesis", {"hypothesis": f"cakes {CANARY}", "confidence": 0.8, "evidence": ["cake"]}),
                ("ask_model", {"prompts": [PROMPT]})]},
            {"text": f"Done.\nFINAL(description: \"Bakes cakes hot. {CANARY}\")"},
            {"text": f"Right topic. {CANARY}\nSCORE: 5"}]


def leaks(roots: list[Path], skip: Path | None = None) -> list[str]:
    """Every file under `roots` that holds the canary (or its middle third, in case it was cut)."""
    needles = [CANARY.encode(), CANARY[len(CANARY) // 3: 2 * len(CANARY) // 3].encode()]
    return [str(p) for root in roots for p in root.rglob("*")
            if p.is_file() and p != skip and any(n in p.read_bytes() for n in needles)]


@pytest.mark.parametrize("source", ["environment", "config-file"])
def test_the_key_never_reaches_the_store_logs_or_clients(source: str) -> None:
    with short_dir() as runtime, ScriptedLLMServer(script()) as server:
        env = engine_env(runtime, DIFFLENS_LLM_BASE_URL=server.base_url)
        for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DIFFLENS_LLM_API_KEY", "DIFFLENS_LLM_MODEL"):
            env.pop(name, None)
        home = Path(env["DIFFLENS_HOME"])
        config = home / "config.toml"
        if source == "environment":
            env["OPENAI_API_KEY"] = CANARY
        else:
            home.mkdir(parents=True)
            config.write_text(f'[llm]\nmodel = "openai:scripted"\napi_key = "{CANARY}"\n')
            config.chmod(0o600)
        sock = runtime / "engine.sock"
        assert engine_cli("start", "--socket", str(sock), env=env).returncode == 0
        events: list[dict[str, Any]] = []

        async def run_agent() -> dict[str, Any]:
            client = await connect(f"unix:{sock}")
            try:
                return await client.run_job("agent.run", {
                    "environment": CAKE_ENV, "llm": "openai:scripted", "grade": True,
                    "organism_description": "Bakes cakes at 450F with frozen butter.", "organism_type": "sdf"},
                    events.append)
            finally:
                await client.close()

        try:
            result = asyncio.run(run_agent())
        finally:
            engine_cli("stop", "--socket", str(sock), env=env)
        assert server.requests and all(r["headers"]["authorization"] == f"Bearer {CANARY}" for r in server.requests)
        [run] = result["runs"]
        assert run["status"] == "done" and run["grade"]["score"] == 5
        assert "[redacted]" in Path(run["path"]).read_text()
        assert (runtime / "engine.log").stat().st_size > 0
        assert leaks([home, runtime], skip=config) == []
        assert CANARY not in json.dumps(result) + json.dumps(events)
