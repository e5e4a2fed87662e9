"""One loaded base for every adapter of it: views equal separately loaded adapters, mixed-adapter batches
equal per-adapter runs, and no adapter is switched under a trace running in another thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine.adl.adapter_group import precompute_adapters
from engine.adl.compute import compute_adl
from engine.adl.request import AdlRequest
from engine.jobs import JobContext
from engine.models import cache
from engine.models.cache import ModelCache
from engine.models.device import resolve_placement
from engine.models.specs import parse_spec
from store import results
from tests.support.board_pairs import plant_adapter
from tests.support.engine_helpers import write_corpus
from tests.support.tiny import save_tiny

CPU = resolve_placement("cpu", "float32")


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("shared")
    base = save_tiny(root / "base", "llama")
    targets = [["gate_proj", "down_proj"], ["q_proj", "v_proj", "o_proj"], ["gate_proj", "up_proj"]]
    return {"base": str(base), **{f"a{i}": str(plant_adapter(base, root / f"a{i}", i + 1, t))
                                  for i, t in enumerate(targets)}}


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A cold model cache for the test; returns the list of checkpoints it loads."""
    loads: list[str] = []
    monkeypatch.setattr(cache, "MODELS", ModelCache())
    for module in ("engine.adl.compute", "engine.adl.adapter_group"):
        monkeypatch.setattr(f"{module}.MODELS", cache.MODELS)
    real = cache.load_model
    monkeypatch.setattr(cache, "load_model", lambda spec, placement: loads.append(spec.label()) or
                        real(spec, placement))
    return loads


def test_adapter_views_share_one_base_and_equal_separate_peft_models(adapters: dict[str, str],
                                                                     fresh_cache: list[str]) -> None:
    from peft import PeftModel

    ids = torch.randint(3, 100, (2, 7))
    views = {name: cache.MODELS.model(parse_spec(adapters["base"], adapter=adapters[name]), CPU)
             for name in ("a0", "a1", "a2")}
    plain = cache.MODELS.model(parse_spec(adapters["base"]), CPU)
    assert len(fresh_cache) == 1 and all(v.hf is plain.hf for v in views.values())
    reference_base = AutoModelForCausalLM.from_pretrained(adapters["base"]).eval()
    with torch.no_grad():
        for name, view in views.items():
            reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(adapters["base"]),
                                                  adapters[name]).eval()
            with cache.MODELS.pair(parse_spec(adapters["base"]), view.spec, CPU).use("ft") as model:
                got = model.hf(ids).logits
            assert (got - reference(ids).logits).abs().max() < 1e-5, name
        assert (plain.hf(ids).logits - reference_base(ids).logits).abs().max() < 1e-6  # at rest: the base


def test_mixed_adapter_batches_equal_per_adapter_runs(adapters: dict[str, str], fresh_cache: list[str],
                                                      tmp_path: Path) -> None:
    corpus = str(write_corpus(tmp_path / "c.txt"))
    requests = [AdlRequest(base=adapters["base"], ft=adapters["base"], adapter=adapters[name], corpus=corpus, n=20,
                           k=3, batch_size=6, device="cpu", dtype="float32") for name in ("a0", "a1", "a2")]
    mixed = precompute_adapters(requests, JobContext())
    assert len(mixed) == 2 and all(o.result.meta["base_pass_reused"] for o in mixed)  # the first ran joint
    assert len(fresh_cache) == 1
    stored = {o.run: {n: t.copy() for n, t in o.result.tensors.items()} for o in mixed}
    results.connect().execute("delete from results")
    for request in requests[1:]:
        alone = compute_adl(request)
        assert alone.run in stored and not alone.cached
        for name in ("mean_diff", "mean_base", "base_norm", "ft_norm"):
            assert abs(alone.result.tensors[name] - stored[alone.run][name]).max() < 1e-5, name
        assert abs(alone.result.tensors["mean_diff"]).max() > 1e-3


def test_no_adapter_is_switched_under_a_running_trace(adapters: dict[str, str], fresh_cache: list[str]) -> None:
    base = parse_spec(adapters["base"])
    first = cache.MODELS.pair(base, parse_spec(adapters["base"], adapter=adapters["a0"]), CPU)
    second = cache.MODELS.pair(base, parse_spec(adapters["base"], adapter=adapters["a1"]), CPU)
    entered, seen = threading.Event(), []

    def other() -> None:
        entered.wait()
        with second.use("ft") as model:
            seen.append([list(layer.active_adapters) for layer in model.hf.modules() if hasattr(layer, "lora_A")])

    thread = threading.Thread(target=other)
    thread.start()
    with first.use("ft") as model:
        entered.set()
        thread.join(timeout=0.5)
        assert thread.is_alive() and not seen  # waiting for the lock, not swapping the adapter
        active = {tuple(layer.active_adapters) for layer in model.hf.modules() if hasattr(layer, "lora_A")}
        assert active == {(first.ft.adapter_name,)}
    thread.join()
    assert seen and {tuple(a) for a in seen[0]} == {(second.ft.adapter_name,)}
