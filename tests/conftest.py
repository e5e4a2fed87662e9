"""Shared fixtures: an isolated store per test, tiny checkpoints built once per session, and those loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.models.device import resolve_placement
from engine.models.loading import LoadedModel, load_model
from engine.models.specs import parse_spec
from tests.support.tiny import perturbed_copy, save_tiny


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own DIFFLENS_HOME; the model cache dir is shared (converted checkpoints)."""
    home = tmp_path / "difflens-home"
    monkeypatch.setenv("DIFFLENS_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny") / "llama", "llama")


@pytest.fixture(scope="session")
def tiny_ft_dir(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    return perturbed_copy(tiny_dir, tmp_path_factory.mktemp("tiny") / "llama-ft")


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("tiny") / "gemma", "gemma")


def _load(path: Path) -> LoadedModel:
    return load_model(parse_spec(str(path)), resolve_placement("cpu", "float32"))


@pytest.fixture(scope="module")
def llama(tiny_dir: Path) -> LoadedModel:
    """The tiny Llama, loaded as the engine loads models (fp32 on the CPU)."""
    return _load(tiny_dir)


@pytest.fixture(scope="module")
def gemma(tiny_gemma_dir: Path) -> LoadedModel:
    """The tiny Gemma 3, loaded as the engine loads models (fp32 on the CPU)."""
    return _load(tiny_gemma_dir)
