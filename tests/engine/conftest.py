"""Fixtures of the engine tests: the LLM settings of the agent tests, a board of planted adapters, and a base
whose logit lens reads words."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support.agent_fixtures import KEY
from tests.support.board_pairs import plant_adapter
from tests.support.tiny import save_tiny, tiny_tokenizer


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


@pytest.fixture(scope="module")
def peaky_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose unembedding is as peaked as a trained one's, so its logit lens reads words."""
    from transformers import AutoModelForCausalLM

    path = save_tiny(tmp_path_factory.mktemp("sig") / "base", "llama")
    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(50.0)
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path
