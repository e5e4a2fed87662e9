"""ADL step 1: the mean diff matches a straightforward reference; caching, corruption, resume, mismatch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine.adl.compute import CHECKPOINT_EVERY_S, checkpoint_path, compute_adl
from engine.adl.request import AdlRequest
from engine.corpus.sources import load_examples, parse_corpus
from engine.corpus.windows import make_windows
from engine.errors import JobCancelled, UserError
from engine.jobs import JobContext
from store import results
from tests.support.tiny import WORDS, save_tiny, tiny_tokenizer


def write_corpus(path: Path, n: int = 40, seed: int = 0) -> Path:
    g = torch.Generator().manual_seed(seed)
    lines = [" ".join(WORDS[int(i)] for i in torch.randint(0, 100, (int(torch.randint(3, 12, (1,), generator=g)),),
                                                            generator=g)) for _ in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def reference_mean_diff(base_dir: Path, ft_dir: Path, corpus: Path, n: int, k: int, seed: int) -> torch.Tensor:
    """The straightforward way: full forward with output_hidden_states on the same windows.

    HF's last hidden state has the final norm applied, so the last decoder layer's raw output is read
    with a forward hook instead.
    """
    tok = tiny_tokenizer()
    windows, _ = make_windows(tok, load_examples(parse_corpus(str(corpus)), n, seed), k)
    ids = torch.tensor([w.ids for w in windows])
    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    ft = AutoModelForCausalLM.from_pretrained(ft_dir).eval()
    def run(model: torch.nn.Module) -> torch.Tensor:
        last: list[torch.Tensor] = []
        handle = model.model.layers[-1].register_forward_hook(lambda m, i, o: last.append(o))
        with torch.no_grad():
            hidden = model(ids, output_hidden_states=True).hidden_states[1:-1]
        handle.remove()
        return torch.stack([*hidden, last[0]])

    hb, hf = run(base), run(ft)
    return (hf - hb)[:, :, 1: k + 1].mean(1)


@pytest.mark.parametrize("kind", ["llama", "gemma"])
def test_mean_diff_matches_hidden_states_reference(tmp_path: Path, kind: str) -> None:
    base = save_tiny(tmp_path / "base", kind, seed=0)
    ft = save_tiny(tmp_path / "ft", kind, seed=0)
    model = AutoModelForCausalLM.from_pretrained(ft)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "mlp" in name:
                p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(ft)
    corpus = write_corpus(tmp_path / "corpus.txt")
    request = AdlRequest(base=str(base), ft=str(ft), corpus=str(corpus), n=30, k=4, batch_size=7)
    outcome = compute_adl(request)
    got = torch.from_numpy(outcome.result.tensors["mean_diff"])
    want = reference_mean_diff(base, ft, corpus, 30, 4, 0)
    assert got.shape == want.shape == (4, 4, 32)
    assert (got - want).abs().max() < 1e-4
    assert got.abs().max() > 1e-3


def test_second_call_is_a_cache_hit(tiny_dir: Path, tiny_ft_dir: Path, tmp_path: Path) -> None:
    request = AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus=str(write_corpus(tmp_path / "c.txt")),
                         n=16, k=3)
    first = compute_adl(request)
    second = compute_adl(request)
    assert not first.cached and second.cached and first.run == second.run
    assert (first.result.tensors["mean_diff"] == second.result.tensors["mean_diff"]).all()


@pytest.mark.reliability
def test_corrupt_file_is_recomputed(tiny_dir: Path, tiny_ft_dir: Path, tmp_path: Path) -> None:
    request = AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus=str(write_corpus(tmp_path / "c.txt")),
                         n=16, k=3)
    first = compute_adl(request)
    path = results.file_for(first.run)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    assert results.load(first.run) is None
    again = compute_adl(request)
    assert not again.cached
    assert (again.result.tensors["mean_diff"] == first.result.tensors["mean_diff"]).all()
    path.write_bytes(b"")
    assert compute_adl(request).cached is False


@pytest.mark.reliability
def test_interrupted_run_resumes_from_checkpoint(tiny_dir: Path, tiny_ft_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = write_corpus(tmp_path / "c.txt")
    request = AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus=str(corpus), n=30, k=3, batch_size=5)
    full = compute_adl(request).result.tensors["mean_diff"]
    for path in results.file_for("x").parent.iterdir():
        path.unlink()
    results.connect().execute("delete from results")

    seen: list[int] = []

    def emit(event: dict) -> None:
        seen.append(event["done"])
        if event["done"] >= 15:
            ctx.cancel_event.set()

    ctx = JobContext(emit=emit)
    with pytest.raises(JobCancelled):
        compute_adl(request, ctx)
    run_id = request.run_id(4)
    assert checkpoint_path(run_id).exists()
    assert not results.file_for(run_id).exists()
    progress: list[int] = []
    resumed = compute_adl(request, JobContext(emit=lambda e: progress.append(e["done"])))
    assert progress[0] == 20, "resumed after the 15 texts already summed"
    assert abs(resumed.result.tensors["mean_diff"] - full).max() < 1e-6
    assert not checkpoint_path(run_id).exists()
    assert CHECKPOINT_EVERY_S > 0


@pytest.mark.reliability
def test_pair_mismatch_is_refused(tiny_dir: Path, tmp_path: Path) -> None:
    other = save_tiny(tmp_path / "wide", "llama", hidden=48)
    with pytest.raises(UserError, match=r"not diffable.*hidden sizes differ"):
        compute_adl(AdlRequest(base=str(tiny_dir), ft=str(other), corpus="generic:", n=4))


@pytest.mark.reliability
def test_bad_parameters_are_user_errors(tiny_dir: Path) -> None:
    with pytest.raises(UserError, match="k must be positive"):
        compute_adl(AdlRequest(base=str(tiny_dir), ft=str(tiny_dir), k=0))
    with pytest.raises(UserError, match="out of range"):
        compute_adl(AdlRequest(base=str(tiny_dir), ft=str(tiny_dir), layers=(9,), n=4))
    with pytest.raises(UserError, match="does not exist"):
        compute_adl(AdlRequest(base=str(tiny_dir) + "-missing", ft=str(tiny_dir)))


def test_identical_pair_gives_zero_diff_with_self_corpus(tiny_dir: Path) -> None:
    outcome = compute_adl(AdlRequest(base=str(tiny_dir), ft=str(tiny_dir), corpus="self:", n=12, k=4))
    assert outcome.result.tensors["mean_diff"].shape == (4, 4, 32)
    assert abs(outcome.result.tensors["mean_diff"]).max() == 0
    assert outcome.result.tensors["base_norm"].min() > 0


@pytest.mark.parametrize("adapter_pair", [False, True])
def test_sequential_mode_equals_joint_mode(tiny_dir: Path, tiny_ft_dir: Path, tmp_path: Path,
                                           adapter_pair: bool) -> None:
    corpus = str(write_corpus(tmp_path / "c.txt"))
    if adapter_pair:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir),
                               LoraConfig(r=2, target_modules=["gate_proj", "down_proj"]))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
        model.save_pretrained(tmp_path / "adapter")
        ft, adapter = str(tiny_dir), str(tmp_path / "adapter")
    else:
        ft, adapter = str(tiny_ft_dir), None
    joint = compute_adl(AdlRequest(base=str(tiny_dir), ft=ft, adapter=adapter, corpus=corpus, n=24, k=3,
                                   batch_size=5))
    results.connect().execute("delete from results")
    sequential = compute_adl(AdlRequest(base=str(tiny_dir), ft=ft, adapter=adapter, corpus=corpus, n=24, k=3,
                                        batch_size=5, sequential=True))
    assert not sequential.cached and sequential.run == joint.run
    for name in ("mean_diff", "mean_base", "base_norm", "ft_norm"):
        assert abs(sequential.result.tensors[name] - joint.result.tensors[name]).max() < 1e-5, name
    assert abs(joint.result.tensors["mean_diff"]).max() > 1e-3


@pytest.mark.reliability
def test_memory_planner_refuses_an_impossible_plan(tiny_dir: Path, tiny_ft_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.adl import compute
    from engine.models import memory
    from engine.models.cache import ModelCache

    monkeypatch.setattr(compute, "MODELS", ModelCache())  # nothing loaded yet: the plan is checked
    monkeypatch.setattr(memory, "available_bytes", lambda placement: 1000)
    with pytest.raises(UserError, match=r"does not fit: joint: needs .* GiB.*use --sequential \(needs"):
        compute_adl(AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), n=4, k=2))
    plan = memory.plan_memory(*[AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir)).base_spec] * 2,
                              AdlRequest(base="x", ft="y").placement, sequential=True)
    assert plan.needed is not None and plan.needed < 2 * plan.base  # type: ignore[operator]


def test_sequential_mode_frees_the_base_before_loading_the_finetune(tiny_dir: Path, tiny_ft_dir: Path,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import gc
    import weakref

    from engine.adl import compute
    from engine.models.cache import ModelCache

    seen: dict[str, object] = {}

    class Watching(ModelCache):
        def model(self, spec, placement):  # type: ignore[no-untyped-def]
            if spec.path == str(tiny_ft_dir.resolve()):
                gc.collect()
                seen["base_alive_when_ft_loads"] = seen["base"]() is not None  # type: ignore[operator]
            loaded = super().model(spec, placement)
            seen.setdefault("base", weakref.ref(loaded))
            return loaded

    monkeypatch.setattr(compute, "MODELS", Watching())
    compute_adl(AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus=str(write_corpus(tmp_path / "c.txt")),
                           n=8, k=2, sequential=True))
    assert seen["base_alive_when_ft_loads"] is False


@pytest.mark.parametrize("sequential", [False, True])
def test_a_cached_base_pass_is_reused_and_equals_the_joint_run(tiny_dir: Path, tiny_ft_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               sequential: bool) -> None:
    from engine.adl import accumulate

    corpus = str(write_corpus(tmp_path / "c.txt"))
    first = compute_adl(AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus=corpus, n=24, k=3, batch_size=5))
    assert first.result.meta["base_pass_reused"] is False
    joint = {name: arr.copy() for name, arr in first.result.tensors.items()}
    results.connect().execute("delete from results where kind = 'adl'")
    rows: list[int] = []
    real_read = accumulate.read_positions
    monkeypatch.setattr(accumulate, "read_positions", lambda model, batch, layers:
                        rows.append(batch.input_ids.shape[0]) or real_read(model, batch, layers))
    monkeypatch.setattr("engine.adl.compute.read_positions", accumulate.read_positions)
    again = compute_adl(AdlRequest(base=str(tiny_dir), ft=str(tiny_ft_dir), corpus=corpus, n=24, k=3, batch_size=7,
                                   sequential=sequential))
    assert not again.cached and again.run == first.run
    assert sum(rows) == 24  # the finetuned side only
    assert again.result.meta["base_pass_reused"] is True
    assert again.result.meta["base_pass"] == first.result.meta["base_pass"]
    for name in ("mean_diff", "mean_base", "base_norm", "ft_norm"):
        assert abs(again.result.tensors[name] - joint[name]).max() < 1e-5, name


def test_a_run_whose_model_names_now_mean_other_weights_is_not_read_with_them(tmp_path: Path) -> None:
    """A stored request names models as typed; when a name comes to mean other weights (a directory retrained,
    an alias re-pointed), readouts of the run refuse to load them, and a caller holding the request that found
    the run (triage) reads with the models it named."""
    from engine.adl.runs import load_run
    from tests.support.tiny import perturbed_copy

    base = save_tiny(tmp_path / "base", "llama")
    ft = perturbed_copy(base, tmp_path / "ft")
    request = AdlRequest(base=str(base), ft=str(ft), corpus=str(write_corpus(tmp_path / "c.txt")), n=8, k=3,
                         device="cpu", dtype="float32")
    run_id = compute_adl(request).run
    load_run(run_id).check_models()  # same weights: fine
    other = perturbed_copy(base, tmp_path / "other", seed=7)
    for name in ("model.safetensors", "config.json"):
        (ft / name).write_bytes((other / name).read_bytes())
    with pytest.raises(UserError, match="other weights"):
        load_run(run_id).pair()
    renamed = AdlRequest(base=str(base), ft=str(other), corpus=request.corpus, n=8, k=3, device="cpu",
                         dtype="float32")
    assert load_run(run_id, request=renamed).request.ft == str(other)


def test_a_run_is_named_by_its_whole_id_or_a_unique_prefix(tmp_path: Path) -> None:
    """Ids are long: any unique prefix names the run (readout cache keys still use the whole id); an ambiguous
    prefix is refused in one line that lists the candidates."""
    import numpy as np

    from engine.adl.request import KIND
    from engine.adl.runs import load_run
    from tests.support.tiny import perturbed_copy

    base = save_tiny(tmp_path / "base", "llama")
    request = AdlRequest(base=str(base), ft=str(perturbed_copy(base, tmp_path / "ft")),
                         corpus=str(write_corpus(tmp_path / "c.txt")), n=8, k=3, device="cpu", dtype="float32")
    run_id = compute_adl(request).run
    assert load_run(run_id).run_id == run_id
    assert load_run(run_id[:9]).run_id == run_id
    other = results.save(KIND, {"another": "run"}, {"x": np.zeros(1, dtype=np.float32)}, {}).key
    shared = next(i for i in range(len(run_id)) if run_id[i] != other[i])
    with pytest.raises(UserError, match=f"run prefix '{run_id[:shared]}' matches 2 runs") as refused:
        load_run(run_id[:shared])
    assert run_id in str(refused.value) and other in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(UserError, match="no ADL run 'adl-zz'"):
        load_run("adl-zz")
