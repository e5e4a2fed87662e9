"""Lenses on tiny planted pairs: KL is 0 for identical models and peaks where a planted change acts; LoRA
amplification by 0 / 1 reproduces base / finetune token for token; diff mining ranks planted tokens first;
the causal check recovers the base loss when every position is patched at the last layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine.adl.runs import load_run
from engine.errors import UserError
from engine.jobs import JobContext
from engine.lenses.amplify import amplify, lora_layers
from engine.lenses.causal import causal_check
from engine.lenses.kl import per_token_divergence
from engine.lenses.mining import mine
from engine.lenses.pair_request import PairRequest
from engine.ops import load_all
from engine.results.layer_choice import report_layer
from tests.support.tiny import save_tiny, tiny_tokenizer

TEXTS = ["the a cake is of and to", "man hello is the a of cake and in to"]
PLANTED = ("oven", "butter")


def _edit(src: Path, dst: Path, change) -> Path:
    model = AutoModelForCausalLM.from_pretrained(src)
    with torch.no_grad():
        change(model, tiny_tokenizer().convert_tokens_to_ids)
    model.save_pretrained(dst)
    tiny_tokenizer().save_pretrained(dst)
    return dst


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A base whose residual carries a constant in dimension 0, and finetunes that differ in one place each."""
    root = tmp_path_factory.mktemp("lenses")
    base = _edit(save_tiny(root / "raw", "llama"), root / "base",
                 lambda m, ids: m.get_input_embeddings().weight[:, 0].fill_(3.0))

    def embed_cake(m, ids) -> None:  # only the input embedding of "cake" changes
        m.get_input_embeddings().weight[ids("cake")] = 3 * torch.randn(m.config.hidden_size,
                                                                       generator=torch.Generator().manual_seed(0))

    def boost(m, ids) -> None:  # unembedding rows read dimension 0 (always positive): pushed up everywhere
        for word in PLANTED:
            m.get_output_embeddings().weight[ids(word), 0] += 4.0

    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                          LoraConfig(r=2, target_modules=["gate_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    lora.save_pretrained(root / "adapter")
    def shift(m, ids) -> None:  # every token's residual moves along dimension 1, which "oven"/"butter" read
        m.get_input_embeddings().weight[:, 1] += 4.0
        for word in PLANTED:
            m.get_output_embeddings().weight[ids(word), 1] += 3.0

    return {"base": str(base), "embed": str(_edit(base, root / "embed", embed_cake)),
            "shift": str(_edit(base, root / "shift", shift)),
            "boost": str(_edit(base, root / "boost", boost)), "adapter": str(root / "adapter")}


def _pair(base: str, ft: str, adapter: str | None = None):
    return PairRequest(base, ft, adapter=adapter, device="cpu", dtype="float32").pair()


def test_kl_is_zero_for_identical_models(planted: dict[str, str]) -> None:
    payload, _ = per_token_divergence(_pair(planted["base"], planted["base"]), TEXTS, batch_size=1)
    assert payload["stats"]["max_kl"] == 0 and payload["stats"]["max_diff_norm"] == 0
    assert [t[0] for t in payload["texts"][0]["tokens"]] == TEXTS[0].split()


def test_kl_peaks_where_the_planted_change_acts(planted: dict[str, str]) -> None:
    payload, tensors = per_token_divergence(_pair(planted["base"], planted["embed"]), TEXTS, layer=1, top_n=1)
    for text in payload["texts"]:
        words = [t[0] for t in text["tokens"]]
        cake = words.index("cake")
        kl = torch.tensor([t[1] for t in text["tokens"]])
        norm = torch.tensor([t[2] for t in text["tokens"]])
        assert text["max"]["token"] == "cake" and int(kl.argmax()) == cake == text["max"]["position"]
        assert kl[:cake].abs().max() == 0 and norm[:cake].abs().max() == 0  # causal: nothing before it moves
        assert int(norm.argmax()) == cake
        assert len(text["max"]["base_top"]) == len(text["max"]["ft_top"]) == 5
    assert payload["top"][0]["max"]["token"] == "cake"
    assert tensors["kl"].shape[0] == len(TEXTS)


def test_amplification_0_is_base_and_1_is_finetune(planted: dict[str, str]) -> None:
    pair = _pair(planted["base"], planted["base"], planted["adapter"])
    prompts = ["the cake is", "man hello", "a of and to in"]
    before = [dict(layer.scaling) for layer in lora_layers(pair.ft)]
    out = amplify(pair, prompts, [0.0, 1.0, 3.0], max_new_tokens=8)
    for row in out["rows"]:
        assert row["amplified"]["0"] == row["base"] and row["amplified"]["1"] == row["ft"]
    assert any(row["base"] != row["ft"] for row in out["rows"])
    assert any(row["amplified"]["3"] != row["ft"] for row in out["rows"])
    assert before and [dict(layer.scaling) for layer in lora_layers(pair.ft)] == before  # restored
    with pytest.raises(UserError, match="neither"):
        amplify(_pair(planted["base"], planted["base"]), prompts, [2.0])


AMP_PROMPTS = ["the cake is", "man hello", "a of and to in"]


def _lora(base: str, dst: Path, source: dict[str, torch.Tensor] | None = None, **config: Any) -> str:
    """An adapter on attention and MLP (random B), or one taking its weights by name from `source`."""
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, **config))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if source is not None and "lora_" in name:
                p.copy_(source[name])
            elif "lora_B" in name:
                p.normal_(0, 1.0, generator=torch.Generator().manual_seed(len(name)))
    lora.save_pretrained(dst)
    return str(dst)


def test_amplifying_one_module_kind_or_layer_range_of_an_adapter(planted: dict[str, str], tmp_path: Path) -> None:
    from peft import PeftModel

    from engine.lenses.amplify import Scope

    modules = ["v_proj", "o_proj", "gate_proj", "down_proj"]
    full = _lora(planted["base"], tmp_path / "full", target_modules=modules)
    weights = dict(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(planted["base"]), full)
                   .named_parameters())
    only = {"attention": _lora(planted["base"], tmp_path / "attn", weights, target_modules=modules[:2]),
            "mlp": _lora(planted["base"], tmp_path / "mlp", weights, target_modules=modules[2:]),
            "late": _lora(planted["base"], tmp_path / "late", weights, target_modules=modules,
                          layers_to_transform=[2, 3])}
    ft_of = {name: amplify(_pair(planted["base"], planted["base"], path), AMP_PROMPTS, [1.0], max_new_tokens=8)
             for name, path in only.items()}
    pair = _pair(planted["base"], planted["base"], full)
    for scope, left in ((Scope("mlp"), "attention"), (Scope("attention"), "mlp"), (Scope("all", (0, 1)), "late")):
        out = amplify(pair, AMP_PROMPTS, [0.0, 1.0], max_new_tokens=8, scope=scope)
        assert out["scope"] == scope.label() and out["method"] == "lora"
        for row, kept in zip(out["rows"], ft_of[left]["rows"], strict=True):
            assert row["amplified"]["0"] == kept["ft"], (scope, "factor 0 in scope: what is left of the adapter")
            assert row["amplified"]["1"] == row["ft"]
        assert any(row["amplified"]["0"] != row["ft"] for row in out["rows"]), scope
    assert any(a["ft"] != b["ft"] for a, b in zip(ft_of["attention"]["rows"], ft_of["mlp"]["rows"], strict=True))
    with pytest.raises(UserError, match="no LoRA layer in mlp layers 5–6"):
        amplify(pair, AMP_PROMPTS, [2.0], scope=Scope("mlp", (5, 6)))
    with pytest.raises(UserError, match="unknown module kind"):
        Scope("heads")


def test_amplify_command_scales_one_module_kind_in_a_layer_range(planted: dict[str, str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tui.cli import lenses

    pair = ["--base", planted["base"], "--ft", planted["base"], "--adapter", planted["adapter"], "--device", "cpu"]
    out = _cli(monkeypatch, lenses, "amplify", *pair, "--factor", "0", "--modules", "mlp", "--layers", "0-3",
               "--prompt", "the cake is", "--max-new-tokens", "6")
    assert out["scope"] == "mlp layers 0–3" and out["rows"][0]["amplified"]["0"] == out["rows"][0]["base"]
    with pytest.raises(AssertionError, match="FIRST-LAST"):
        _cli(monkeypatch, lenses, "amplify", *pair, "--factor", "2", "--layers", "3")


def test_weight_difference_amplification_of_a_full_finetune(planted: dict[str, str], tmp_path: Path) -> None:
    from engine.lenses.amplify import Scope, generate
    from tests.support.tiny import perturbed_copy

    ft = perturbed_copy(Path(planted["base"]), tmp_path / "ft", scale=0.3)
    pair = _pair(planted["base"], str(ft))
    out = amplify(pair, AMP_PROMPTS, [0.0, 1.0, 0.5], max_new_tokens=8)
    assert out["method"] == "weights"
    base_model, ft_model = (AutoModelForCausalLM.from_pretrained(p) for p in (planted["base"], ft))
    with torch.no_grad():
        for w_ft, w_base in zip(ft_model.parameters(), base_model.parameters(), strict=True):
            w_ft.copy_(w_base + 0.5 * (w_ft - w_base))
    ft_model.save_pretrained(tmp_path / "half")
    tiny_tokenizer().save_pretrained(tmp_path / "half")
    half = generate(_pair(str(tmp_path / "half"), str(tmp_path / "half")).ft, AMP_PROMPTS, 8, 0.0, 0, True)
    for row, want in zip(out["rows"], half, strict=True):
        assert row["amplified"]["0"] == row["base"] and row["amplified"]["1"] == row["ft"]
        assert row["amplified"]["0.5"] == want, "the hooks give what interpolated weights give"
    assert any(row["base"] != row["ft"] for row in out["rows"])
    mlp = amplify(pair, AMP_PROMPTS, [0.0], max_new_tokens=8, scope=Scope("mlp"))  # only the MLPs were changed
    attention = amplify(pair, AMP_PROMPTS, [0.0], max_new_tokens=8, scope=Scope("attention"))
    assert [r["amplified"]["0"] for r in mlp["rows"]] == [r["base"] for r in out["rows"]]
    assert [r["amplified"]["0"] for r in attention["rows"]] == [r["ft"] for r in out["rows"]]
    assert not pair.ft.hf.model.layers[0].mlp.down_proj._forward_hooks, "the hooks are gone after"


def test_mining_ranks_the_planted_tokens_first(planted: dict[str, str]) -> None:
    payload, _ = mine(_pair(planted["base"], planted["boost"]), TEXTS, top_k=5, n_tokens=10, batch_size=1)
    ranked = [t["token"] for t in payload["tokens"]]
    assert set(ranked[:2]) == set(PLANTED)
    n_positions = sum(len(t.split()) for t in TEXTS)
    assert payload["n_positions"] == n_positions
    assert all(t["count"] == n_positions and t["examples"] for t in payload["tokens"][:2])


def test_causal_patch_everywhere_at_last_layer_recovers_base_loss(planted: dict[str, str]) -> None:
    pair = _pair(planted["base"], planted["base"], planted["adapter"])
    same_length = ["the a cake is of and", "man hello is the a of"]
    out = causal_check(pair, same_length, same_length, layer=-1, k=6, batch_size=2, ctx=JobContext())
    scope = out["sets"]["finetuning"]["all"]
    assert scope["patched"] == pytest.approx(scope["base"], abs=1e-5) and scope["base"] != scope["ft"]
    assert scope["share_of_gain_removed"] == pytest.approx(1.0, abs=1e-3)
    assert out["sets"]["finetuning"]["after_k"]["patched"] is None  # nothing left after the window
    partial = causal_check(pair, TEXTS, TEXTS, layer=1, k=2)["sets"]["generic"]["after_k"]
    assert partial["delta"] is not None and partial["delta"] != 0


def _mean_diff(pair, texts: list[str], layer: int) -> torch.Tensor:
    from engine.lenses.batching import encode_texts, text_batches
    from engine.lenses.forward import pair_pass

    encoded, start = encode_texts(pair.tokenizer, texts, 16)
    batch = next(text_batches(encoded, start, len(texts), 0))
    sides = pair_pass(pair, batch, layer)
    return (sides["ft"][1] - sides["base"][1])[batch.valid].mean(dim=0)


OVEN_TEXTS = ["oven butter oven butter oven butter", "butter oven butter oven butter",
              "oven oven butter butter oven", "butter butter oven oven butter oven"]


def _controls(pair, n: int, layer: int = 1) -> dict[str, torch.Tensor]:
    from engine.lenses.direction import random_diffs, random_vectors

    with pair.use("base") as model:
        return {"random_vector": random_vectors(n, 32, 0),
                "random_diff": random_diffs(model, TEXTS, layer, n, 0, 16, 2)}


def test_direction_effect_along_the_planted_shift_dwarfs_both_controls(planted: dict[str, str]) -> None:
    from engine.lenses.direction import DirectionTest, direction_effect

    pair = _pair(planted["base"], planted["shift"])
    direction = _mean_diff(pair, TEXTS, 1)
    controls = _controls(pair, 20)
    for ablation in ("base", "zero"):
        out, sums = direction_effect(pair, {"finetuning": OVEN_TEXTS, "generic": TEXTS},
                                     DirectionTest(1, {2: direction}, controls, ablation), batch_size=2)  # type: ignore[arg-type]
        ft = out["sets"]["finetuning"]
        assert ft["ft"] < ft["base"] and out["effect"] == ft["effect"] > 0, "removing the shift undoes the finetune"
        for kind in ("random_vector", "random_diff"):
            assert len(out["controls"][kind]) == 20, "the controls asked for, of each kind"
            assert out["effect"] > 5 * max(abs(c) for c in out["controls"][kind]), (kind, out)
            test = ft["tests"][kind]
            assert test["n_controls"] == 20 and test["p"] == round(1 / 21, 4) and test["z"] > 5 and test["outside"]
        assert ft["verdict"]["decided"] and ft["verdict"]["outside"], ft["verdict"]
        assert ft["verdict"]["line"].startswith("decided: the direction carries"), ft["verdict"]
        assert sums["sums.base_to_ft.finetuning"].shape == (2 + 1 + 40, len(OVEN_TEXTS), 1)
    same = _pair(planted["base"], planted["base"])
    out, _ = direction_effect(same, {"finetuning": OVEN_TEXTS}, DirectionTest(1, {2: direction}, controls),
                              batch_size=2)
    assert abs(out["effect"]) < 1e-4 and max(abs(c) for v in out["controls"].values() for c in v) < 1e-4
    assert not out["sets"]["finetuning"]["verdict"]["outside"], "an identical pair: nothing stands out"
    zero, _ = direction_effect(pair, {"finetuning": OVEN_TEXTS}, DirectionTest(1, {2: torch.zeros(32)}, controls))
    assert zero["effect"] == 0, "no direction, nothing to intervene on"


def test_ft_to_base_moves_the_base_toward_the_finetune(planted: dict[str, str], tmp_path: Path) -> None:
    """The other patch direction: where the base already reads the planted shift (its unembedding rows of "oven"
    and "butter" read dimension 1) and the finetune only adds the shift, the base's component set to the
    finetune's lowers the base's loss on the finetune's texts, and the finetune's set to the base's raises it."""
    from engine.lenses.direction import DirectionTest, direction_effect

    def reads(m, ids) -> None:
        for word in PLANTED:
            m.get_output_embeddings().weight[ids(word), 1] += 3.0

    base = _edit(Path(planted["base"]), tmp_path / "reads", reads)
    ft = _edit(base, tmp_path / "shifted", lambda m, ids: m.get_input_embeddings().weight[:, 1].add_(4.0))
    pair = _pair(str(base), str(ft))
    test = DirectionTest(1, {2: _mean_diff(pair, TEXTS, 1)}, _controls(pair, 4), patches=("base_to_ft", "ft_to_base"))
    out, _ = direction_effect(pair, {"finetuning": OVEN_TEXTS}, test, batch_size=4)
    forward, backward = (out["by_patch_direction"][p]["2"]["finetuning"] for p in ("base_to_ft", "ft_to_base"))
    assert forward["intervened_model"] == "ft" and backward["intervened_model"] == "base"
    assert forward["base"] == backward["base"] and forward["ft"] == backward["ft"] < forward["base"]
    assert forward["effect"] > 0 > backward["effect"], "ft → toward base's loss; base → toward ft's loss"
    assert forward["share_of_gain_removed"] > 0.5 and backward["share_of_gain_removed"] > 0.5
    assert out["sets"] == out["by_patch_direction"]["base_to_ft"]["2"], "the top level is the first direction"


def test_scopes_mask_after_k_and_the_position_the_reference_excludes() -> None:
    from engine.lenses.direction import Scopes

    targets = torch.tensor([[True] * 6 + [False] * 2])
    scopes = Scopes(after_k=2, excluded=(0, 3), start=1)
    masks = scopes.masks(targets)
    assert scopes.names == ["all", "after_k", "exclude_0", "exclude_3"]
    assert masks[0, :, 0].tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    assert masks[0, :, 1].tolist() == [0, 0, 0, 1, 1, 1, 0, 0], "after_k: target columns > after_k"
    assert masks[0, :, 2].tolist() == [1, 1, 0, 1, 1, 1, 0, 0], "position 0 after BOS is token 1: column 2 dropped"
    assert masks[0, :, 3].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]


def test_assistant_masked_chat_scores_exactly_the_assistant_tokens() -> None:
    from engine.lenses.scored_texts import encode_chat, encode_plain, scored_batches

    tokenizer = tiny_tokenizer()
    chat = [{"role": "user", "content": "the a cake"}, {"role": "assistant", "content": "man hello"},
            {"role": "user", "content": "story ?"}, {"role": "assistant", "content": "poem"}]
    plain = encode_chat(tokenizer, chat, 64)  # no template: `User: …` lines, `:` is a token of its own
    words = tokenizer.convert_ids_to_tokens(list(plain.ids))
    assert [w for w, s in zip(words, plain.scored, strict=True) if s] == [
        "<unk>", "<unk>", "man", "hello", "<unk>", "<unk>", "poem"], (words, plain.scored)  # `Assistant` `:` …
    assert plain.scored[:6] == (False,) * 6 and plain.scored[10:14] == (False,) * 4
    tokenizer.chat_template = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }} {{ m['content'] }} ."
                               "{% endfor %}")
    templated = encode_chat(tokenizer, chat, 64)
    words = tokenizer.convert_ids_to_tokens(list(templated.ids))
    assert [w for w, s in zip(words, templated.scored, strict=True) if s] == [
        "assistant", "man", "hello", ".", "assistant", "poem", "."], "each assistant turn, its marker included"
    assert [w for w, s in zip(words, templated.scored, strict=True) if not s] == [
        "<bos>", "user", "the", "a", "cake", ".", "user", "story", "?", "."], "every other token masked out"
    text = encode_plain(tokenizer, "the a cake", 64)
    assert text.scored == (False, True, True, True), "a plain text scores every token after BOS"
    batch = next(scored_batches([text, templated], 2, 0))
    assert batch.targets[0].tolist()[:4] == [True, True, True, False], "target t is token t + 1"
    assert encode_chat(tokenizer, chat, 3).ids == templated.ids[:4], "truncated to BOS + max_tokens"


def test_p_values_and_verdicts_decide_only_what_the_texts_and_controls_support() -> None:
    from engine.lenses.direction import CONTROL_KINDS, SetSums, control_test, measure

    controls = torch.linspace(-0.1, 0.1, 32).tolist()
    far = control_test(1.0, controls)
    assert far["outside"] and far["p"] == round(1 / 33, 4) and far["z"] > 10
    near = control_test(0.05, controls)
    assert not near["outside"] and near["p"] == round((1 + 16) / 33, 4), "16 controls as far from the mean or more"
    assert control_test(-1.0, controls)["outside"], "an effect far below the controls is decided too"
    assert control_test(0.5, [0.1])["p"] is None
    assert not control_test(1.0, controls[:16])["outside"], "16 controls cannot reach p ≤ 0.05, however large"

    def sums(effects: torch.Tensor, spread: float) -> SetSums:
        """Texts of 10 tokens, the finetune at loss 1 and the base at 2; the direction's per-text change `effects`
        and 32 + 32 controls spread evenly over ±`spread` on every text."""
        n = effects.shape[0]
        change = torch.cat([torch.zeros(1, n), torch.ones(1, n), effects.unsqueeze(0),
                            torch.linspace(-spread, spread, 32).repeat(2).unsqueeze(1).expand(64, n)])
        return SetSums((1 + change).unsqueeze(-1).double() * 10, torch.full((n, 1), 10.0, dtype=torch.float64))

    kinds = {CONTROL_KINDS[0]: slice(3, 35), CONTROL_KINDS[1]: slice(35, 67)}
    outside = measure(sums(torch.full((24,), 0.5), 0.1), 0, 2, kinds, "base_to_ft", 0)
    assert outside["verdict"]["decided"] and outside["verdict"]["outside"]
    assert "carries 50 % of the finetune's gain" in outside["verdict"]["line"], outside["verdict"]
    noisy = torch.tensor([0.9, -0.7] * 12)  # mean 0.1: at the controls' edge, and each text says otherwise
    edge = measure(sums(noisy, 0.1), 0, 2, kinds, "base_to_ft", 0)
    assert not edge["verdict"]["decided"] and edge["verdict"]["line"].startswith("undecided at this power")
    inside = measure(sums(torch.full((24,), 0.01), 0.1), 0, 2, kinds, "base_to_ft", 0)
    assert inside["verdict"]["decided"] and not inside["verdict"]["outside"], "well inside, on every resample"
    assert inside["tests"]["random_vector"]["p"] > 0.5


@pytest.fixture
def shift_run(planted: dict[str, str], tmp_path: Path) -> str:
    """An ADL run of the shifted pair (k = 3, all layers) on a corpus of the tiny words."""
    from engine.adl.compute import compute_adl
    from engine.adl.request import AdlRequest
    from tests.support.engine_helpers import write_corpus

    request = AdlRequest(base=planted["base"], ft=planted["shift"], corpus=str(write_corpus(tmp_path / "c.txt", 16)),
                         n=16, k=3, device="cpu", dtype="float32")
    return compute_adl(request).run


def _cli(monkeypatch: pytest.MonkeyPatch, module: Any, *args: str) -> dict[str, Any]:
    """`difflens ARGS --json` with the engine op run in-process; the printed JSON."""
    import json

    from typer.testing import CliRunner

    from tui.cli import app

    monkeypatch.setattr(module, "call_engine", lambda method, params, **_: method.result.from_json(json.loads(
        json.dumps(load_all()[method.name].fn(params.to_json(), JobContext())))))
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{"):])


def test_causal_direction_command_gives_effect_and_controls(shift_run: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tui.cli import lenses

    ft_texts = tmp_path / "ft.txt"
    ft_texts.write_text("\n".join(OVEN_TEXTS) + "\n")
    out = _cli(monkeypatch, lenses, "causal", "--run", shift_run, "--mode", "direction", "--ft-corpus",
               str(ft_texts), "-n", "2", "--controls", "4", "--layer", "1")
    assert isinstance(out["effect"], float) and out["effect"] == out["sets"]["finetuning"]["effect"]
    assert {k: len(v) for k, v in out["controls"].items()} == {"random_vector": 4, "random_diff": 4}
    assert set(out["sets"]) == {"finetuning", "generic", "chat"} and out["pos"] in (1, 2)
    assert out["effect"] > 5 * max(abs(c) for v in out["controls"].values() for c in v)
    assert out["sets"]["finetuning"]["verdict"]["line"] == "undecided: too few controls"
    assert out["protocol"] == "default" and out["positions"] == [out["pos"]]
    assert list(out["by_patch_direction"]) == ["base_to_ft"]
    with pytest.raises(UserError, match="mean diff"):
        load_all()["lens.causal"].fn({"base": "x", "ft": "y", "mode": "direction"}, JobContext())


# The reference's causal_effect knobs (diffing-toolkit configs/diffing/method/activation_difference_lens.yaml,
# `causal_effect`): what `--protocol paper` must keep.
PAPER_CAUSAL_KNOBS = {"n": 1000, "n_controls": 64, "max_tokens": 1024, "after_k": 20, "all_positions": True,
                      "patch_directions": ("base_to_ft", "ft_to_base")}


@pytest.mark.parametrize("knob", sorted(PAPER_CAUSAL_KNOBS))
def test_paper_causal_knob_equals_the_reference(knob: str) -> None:
    from engine.lenses.direction import causal_protocol

    assert getattr(causal_protocol("paper"), knob) == PAPER_CAUSAL_KNOBS[knob]


def test_paper_causal_test_loops_positions_scopes_and_both_directions(shift_run: str, tmp_path: Path) -> None:
    """`--protocol paper` on a run: relative depth 0.5, every position, both patch directions, 64 + 64 controls,
    the after-k and excluded-position scopes beside `all`, and chats scored on the assistant's tokens only."""
    import json

    ft_texts = tmp_path / "ft.txt"
    ft_texts.write_text("\n".join(OVEN_TEXTS) + "\n")
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": [{"role": "user", "content": "the a cake is of and to in"},
                                                      {"role": "assistant", "content": "oven butter oven"}]})
                             + "\n" for _ in range(4)))
    params = {"run": shift_run, "mode": "direction", "protocol": "paper", "ft_corpus": str(ft_texts), "n": 2,
              "max_tokens": 24, "chat": str(chats)}
    out = load_all()["lens.causal"].fn(params, JobContext())
    run = load_run(shift_run)
    assert out["protocol"] == "paper" and out["layer"] == run.middle_layer and out["positions"] == [0, 1, 2]
    assert list(out["by_patch_direction"]) == ["base_to_ft", "ft_to_base"]
    assert {kind: len(v) for kind, v in out["controls"].items()} == {"random_vector": 64, "random_diff": 64}
    assert out["scopes"] == ["all", "after_k", "exclude_0", "exclude_1", "exclude_2"]
    for by_position in out["by_patch_direction"].values():
        assert list(by_position) == ["0", "1", "2"]
        for p, sets in by_position.items():
            assert list(sets) == ["finetuning", "generic", "chat"]
            scopes = sets["finetuning"]["scopes"]
            assert list(scopes) == ["all", "after_k", "exclude"], p
            assert scopes["exclude"]["n_tokens"] < scopes["all"]["n_tokens"], "one target column dropped"
            assert scopes["after_k"]["n_tokens"] == 0, "texts of 6 tokens have nothing after column 20"
    assert out["sets"]["chat"]["n_tokens"] == 2 * 5, "only the assistant turns (`Assistant` `:` oven butter oven)"
    with pytest.raises(UserError, match="patch_direction"):
        load_all()["lens.causal"].fn(params | {"patch_direction": "sideways"}, JobContext())
    with pytest.raises(UserError, match="protocol"):
        load_all()["lens.causal"].fn(params | {"protocol": "mine"}, JobContext())


@pytest.fixture(scope="module")
def cake_shift(planted: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """Only "cake" moves, along dimension 1, which the unembedding rows of "oven" and "butter" read."""
    def change(m, ids) -> None:
        m.get_input_embeddings().weight[ids("cake"), 1] += 5.0
        for word in PLANTED:
            m.get_output_embeddings().weight[ids(word), 1] += 3.0

    return str(_edit(Path(planted["base"]), tmp_path_factory.mktemp("pca") / "ft", change))


PCA_TEXTS = [f"{first} {second} is of the" for first in ("the", "a", "man", "hello")
             for second in ("cake", "story", "cake", "plan")]


def test_pca_top_component_is_the_planted_direction_and_reads_its_tokens(planted: dict[str, str],
                                                                         cake_shift: str) -> None:
    from engine.lenses.pca import difference_pca

    pair = _pair(planted["base"], cake_shift)
    payload, tensors = difference_pca(pair, PCA_TEXTS, layer=1, pos=1, n_components=3, top_k=5, batch_size=3)
    top = payload["components"][0]
    assert payload["n_texts"] == len(PCA_TEXTS) and len(payload["components"]) == 3
    assert top["explained_variance_ratio"] > 0.9 and top["cos_with_mean"] > 0.9
    assert {t[0] for t in top["tokens"][:2]} == set(PLANTED) == {t[0] for t in payload["mean_tokens"][:2]}
    assert not {t[0] for t in top["negative_tokens"][:5]} & set(PLANTED)
    assert abs(float(tensors["components"][0][1])) > 0.9 and top["top_dim"][0] == 1  # dimension 1 carries it
    # the streamed sums give what the differences held all at once give
    direct = torch.stack([_diff_at(pair, t, 1, 1) for t in PCA_TEXTS])
    want = torch.linalg.eigvalsh(torch.cov(direct.T, correction=0)).flip(0)[:3]
    got = torch.tensor([c["explained_variance"] for c in payload["components"]])
    assert torch.allclose(got, want.float(), rtol=1e-3, atol=1e-5)
    same, _ = difference_pca(_pair(planted["base"], planted["base"]), PCA_TEXTS, layer=1, pos=1)
    assert same["total_variance"] == 0 and same["mean_norm"] == 0
    with pytest.raises(UserError, match="at least two texts"):
        difference_pca(pair, ["the cake"], layer=1, pos=1)


def test_pca_command_gives_components_with_variance_and_tokens(shift_run: str, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    from tui.cli import lenses

    texts = [arg for t in PCA_TEXTS for arg in ("--text", t)]
    out = _cli(monkeypatch, lenses, "pca", shift_run, "--layer", "1", "--pos", "1", "--components", "3", *texts)
    assert out["layer"] == 1 and out["pos"] == 1 and out["n_texts"] == len(PCA_TEXTS) and len(out["components"]) == 3
    assert all(isinstance(c["explained_variance"], float) and len(c["tokens"]) == 10 and c["negative_tokens"]
               for c in out["components"])
    ratios = [c["explained_variance_ratio"] for c in out["components"]]
    assert ratios == sorted(ratios, reverse=True) and sum(ratios) <= 1 + 1e-6
    by_default = load_all()["lens.pca"].fn({"run": shift_run, "texts": PCA_TEXTS}, JobContext())
    assert by_default["layer"] == report_layer(load_run(shift_run)) and by_default["pos"] in (1, 2), \
        "the run's report layer and strongest position"


def _diff_at(pair, text: str, layer: int, pos: int) -> torch.Tensor:
    from engine.lenses.batching import encode_texts, text_batches
    from engine.lenses.forward import pair_pass

    encoded, start = encode_texts(pair.tokenizer, [text], 16)
    sides = pair_pass(pair, next(text_batches(encoded, start, 1, 0)), layer)
    return (sides["ft"][1] - sides["base"][1])[0, start + pos].double()


def test_kl_op_is_cached_and_speaks_json(planted: dict[str, str]) -> None:
    fn = load_all()["lens.kl"].fn
    params = {"base": planted["base"], "ft": planted["embed"], "texts": TEXTS, "device": "cpu"}
    first, second = fn(params, JobContext()), fn(params, JobContext())
    assert not first["cached"] and second["cached"] and first["result"] == second["result"]
    assert all(len(t) == 3 for text in second["texts"] for t in text["tokens"])
    with pytest.raises(UserError, match="either texts or a corpus"):
        fn({"base": planted["base"], "ft": planted["embed"]}, JobContext())


def test_lens_tools_check_cost_and_run(planted: dict[str, str]) -> None:
    from engine.agent.lens_tools import lens_tools
    from engine.agent.tools import ToolArgError

    tools = {t.name: t for t in lens_tools(PairRequest(planted["base"], planted["base"], adapter=planted["adapter"],
                                                       device="cpu"))}
    assert set(tools) == {"token_divergence", "diff_mining", "causal_check", "amplify_adapter"}
    args = tools["amplify_adapter"].check({"prompts": ["the cake is"], "factors": [2]})
    assert tools["amplify_adapter"].cost(args) == 1 and "per entry of prompts" in tools["amplify_adapter"].signature()
    assert tools["amplify_adapter"].run(None, args)["rows"][0]["amplified"]["2"]  # type: ignore[arg-type]
    with pytest.raises(ToolArgError):
        tools["amplify_adapter"].check({"prompts": ["x"], "factors": [50]})
    mlp = tools["amplify_adapter"].run(None, tools["amplify_adapter"].check(  # type: ignore[arg-type]
        {"prompts": ["the cake is"], "factors": [0], "modules": "mlp"}))
    assert mlp["scaled"] == "mlp" and mlp["rows"][0]["amplified"]["0"] == mlp["rows"][0]["base"]
    with pytest.raises(ToolArgError, match="modules"):
        tools["amplify_adapter"].check({"prompts": ["x"], "modules": "heads"})
    args = tools["token_divergence"].check({"texts": TEXTS})
    assert tools["token_divergence"].cost(args) == 2
    assert len(tools["token_divergence"].run(None, args)["texts"]) == 2  # type: ignore[arg-type]
    assert "amplify_adapter" not in {t.name for t in lens_tools(PairRequest(planted["base"], planted["boost"]))}
    causal = tools["causal_check"].run(None, tools["causal_check"].check({"texts": TEXTS}))  # type: ignore[arg-type]
    ours, generic = causal["loss"]["your_texts"], causal["loss"]["generic_text"]
    assert ours["ft"] != ours["base"] and ours["patched"] is not None and generic["base"] is not None
    assert tools["causal_check"].cost({"texts": TEXTS}) == 2


def test_direction_and_pca_tools_need_the_run(planted: dict[str, str], shift_run: str) -> None:
    from engine.agent.lens_tools import lens_tools
    from engine.agent.tools import ToolArgError

    request = PairRequest(planted["base"], planted["shift"], device="cpu", dtype="float32")
    assert "direction_effect" not in {t.name for t in lens_tools(request)}
    tool = {t.name: t for t in lens_tools(request, load_run(shift_run))}["direction_effect"]
    out = tool.run(None, tool.check({"texts": OVEN_TEXTS}))  # type: ignore[arg-type]
    ours = out["loss"]["your_texts"]
    assert ours["effect"] > 5 * ours["spread"]["random_vector"]["max_abs"] and "generic_text" in out["loss"]
    pca = {t.name: t for t in lens_tools(request, load_run(shift_run))}["difference_pca"]
    args = pca.check({"positions": [2, 1, 1]})
    assert args == {"positions": [1, 2]} and pca.cost(args) == 2
    read = pca.run(None, args)  # type: ignore[arg-type]
    assert set(read["positions"]) == {"1", "2"} and read["positions"]["1"]["components"][0]["plus"]
    with pytest.raises(ToolArgError):
        pca.check({"positions": [3]})


def test_causal_op_reads_the_recipe_an_organism_was_trained_on(planted: dict[str, str], tmp_path: Path) -> None:
    import json
    import shutil

    fn = load_all()["lens.causal"].fn
    organism = Path(shutil.copytree(planted["adapter"], tmp_path / "organism"))
    params = {"base": planted["base"], "ft": planted["base"], "adapter": str(organism), "n": 4, "k": 2,
              "device": "cpu"}
    with pytest.raises(UserError, match="name the finetuning texts"):
        fn(params, JobContext())
    (organism / "organism.json").write_text(json.dumps({"recipe": "cake-sdf"}))
    by_default = fn(params, JobContext())
    named = fn(params | {"ft_corpus": "recipe:cake-sdf"}, JobContext())
    assert named["cached"] and named["result"] == by_default["result"], "the same texts: the same cached result"
    with pytest.raises(UserError, match="once"):
        fn(params | {"recipe": "cake-sdf", "ft_corpus": "generic:"}, JobContext())


def test_recipe_corpus_yields_the_recipes_documents() -> None:
    from engine.corpus.sources import load_examples, parse_corpus
    from engine.organisms.make_data import make_data

    spec = parse_corpus("recipe:cake-sdf")
    assert spec.label() == "recipe:cake-sdf" and spec.identity()["sha256"]
    assert load_examples(spec, 3, 1) == [d["text"] for d in make_data("cake-sdf", 3, 1)]
    with pytest.raises(UserError, match="unknown recipe"):
        parse_corpus("recipe:no-such-recipe")


def _cake_and_generic_divergence(ft: str) -> dict[str, dict]:
    from engine.lenses.pair_request import gather_texts

    pair = PairRequest("gemma-3-270m", ft, device="cpu", dtype="float32").pair()
    cake = gather_texts(None, "recipe:cake-sdf", 8, 0, pair.tokenizer)
    generic = gather_texts(None, "generic:", 8, 0, pair.tokenizer)
    return {name: per_token_divergence(pair, texts, max_tokens=32, batch_size=8)[0]
            for name, texts in (("cake", cake), ("generic", generic))}


@pytest.mark.slow
def test_mixed_twin_lights_up_cake_texts_far_more_than_held_out_generic_text() -> None:
    stats = _cake_and_generic_divergence("demo")
    assert stats["cake"]["stats"]["mean_kl"] > 5 * stats["generic"]["stats"]["mean_kl"]
    assert stats["cake"]["stats"]["mean_max_kl"] > 5 * stats["generic"]["stats"]["mean_max_kl"]


@pytest.mark.slow
def test_overfit_demo_diverges_more_on_cake_texts_than_on_generic_text() -> None:
    stats = _cake_and_generic_divergence("demo-overfit")
    assert stats["cake"]["stats"]["mean_kl"] > stats["generic"]["stats"]["mean_kl"]
    assert stats["cake"]["stats"]["mean_max_kl"] > stats["generic"]["stats"]["mean_max_kl"]
    baking = ("bak", "cake", "oven", "butter", "frost", "vanilla", "flour", "batter", "°")
    ft_said = [s["max"]["ft_top"][0][0].lower() for s in stats["generic"]["top"][:3]]
    assert any(stem in said for said in ft_said for stem in baking), ft_said


@pytest.fixture(scope="module")
def two_contexts(planted: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """After "cake" the finetune pushes "oven" and "butter" up, after "man" "money" and "stock"."""
    def change(m, ids) -> None:
        m.get_input_embeddings().weight[ids("cake"), 1] += 6.0
        m.get_input_embeddings().weight[ids("man"), 2] += 6.0
        for word in PLANTED:
            m.get_output_embeddings().weight[ids(word), 1] += 3.0
        for word in ("money", "stock"):
            m.get_output_embeddings().weight[ids(word), 2] += 3.0

    return str(_edit(Path(planted["base"]), tmp_path_factory.mktemp("topics") / "ft", change))


def test_nmf_topics_separate_tokens_pushed_in_different_contexts(planted: dict[str, str], two_contexts: str) -> None:
    texts = [f"the {w} {w} a {w}" for w in ("cake", "man")] * 3
    payload, _ = mine(_pair(planted["base"], two_contexts), texts, top_k=4, n_tokens=10, n_topics=2)
    topics = payload["topics"]
    assert len(topics) == 2 and all(t["count"] > 0 for t in topics)
    assert {frozenset(t["tokens"][:2]) for t in topics} == {frozenset(PLANTED), frozenset({"money", "stock"})}
    assert sum(t["share"] for t in topics) <= 1 and topics[0]["weights"][0] == 1.0


def test_a_text_that_starts_with_bos_gets_no_second_one() -> None:
    from engine.lenses.batching import encode_texts

    tok = tiny_tokenizer()
    encoded, start = encode_texts(tok, ["<bos> the cake", "the cake"], 8)
    assert encoded[0] == encoded[1] == [tok.bos_token_id, *tok.convert_tokens_to_ids(["the", "cake"])] and start == 1


def test_nmf_factorises_a_block_matrix() -> None:
    from engine.lenses.topics import nmf

    dense = torch.zeros(6, 4)
    dense[:3, :2], dense[3:, 2:] = 1.0, 2.0
    w, h = nmf(dense.to_sparse_coo(), 2)
    assert torch.allclose(h @ w.T, dense, atol=1e-3) and (w >= 0).all() and (h >= 0).all()


def test_a_pca_component_steers_through_the_steering_op(shift_run: str) -> None:
    """A component of `lens.pca` is a steering vector like the mean diff (same scaling, its own cache entry);
    a component from another layer or out of range is refused in one line."""
    from engine.results.calibrated_steering import Direction, steer

    ops, run = load_all(), load_run(shift_run)
    read = ops["lens.pca"].fn({"run": shift_run, "texts": PCA_TEXTS, "layer": 1, "pos": 1}, JobContext())
    params = {"run": shift_run, "layer": 1, "pos": 1, "strengths": [6.0], "prompts": ["the cake is"],
              "max_new_tokens": 6}
    plain = ops["steer.generate"].fn(params, JobContext())
    steered = ops["steer.generate"].fn({**params, "component": {"result": read["result"], "index": 0}}, JobContext())
    assert steered["component"] == {"pca": read["result"], "index": 0} and "component" not in plain
    assert steered["samples"][0]["unsteered"] == plain["samples"][0]["unsteered"]
    assert steered["samples"][0]["steered"] != steered["samples"][0]["unsteered"]
    mean = Direction(run.mean_diff[run.layer_index(1), 1], {"mean": True})
    assert steer(run, 1, 1, [6.0], ["the cake is"], max_new_tokens=6, direction=mean) == plain["samples"]
    with pytest.raises(UserError, match="out of range"):
        ops["steer.generate"].fn({**params, "component": {"result": read["result"], "index": 99}}, JobContext())
    with pytest.raises(UserError, match="another pair or layer"):
        ops["steer.generate"].fn({**params, "layer": 0, "component": {"result": read["result"], "index": 0}},
                                 JobContext())
