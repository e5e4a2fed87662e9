"""Fixtures of the engine tests: the LLM settings of the agent tests, and a board of planted adapters."""

from __future__ import annotations

import pytest

from tests.support.agent_fixtures import KEY
from tests.support.board_pairs import plant_adapter
from tests.support.tiny import save_tiny


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A tiny llama base and two random adapters on it (MLP, attention), built once per test module."""
    root = tmp_path_factory.mktemp("board")
    base = save_tiny(root / "base", "llama")
    return {"base": str(base),
            "mlp": str(plant_adapter(base, root / "lora-mlp", 1, ["gate_proj", "down_proj"])),
            "attn": str(plant_adapter(base, root / "lora-attn", 2, ["q_proj", "v_proj", "o_proj"]))}


@pytest.fixture
def llm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LLM configured but an OpenAI key that must never leak (the agent tests point at scripted servers)."""
    for name in ("DIFFLENS_LLM_MODEL", "DIFFLENS_LLM_API_KEY", "DIFFLENS_LLM_BASE_URL", "ANTHROPIC_API_KEY",
                 "DIFFLENS_LLM_PRICE_IN", "DIFFLENS_LLM_PRICE_OUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
