"""Lenses on tiny planted pairs: KL is 0 for identical models and peaks where a planted change acts; LoRA
amplification by 0 / 1 reproduces base / finetune token for token; diff mining ranks planted tokens first;
the causal check recovers the base loss when every position is patched at the last layer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from engine.errors import UserError
from engine.jobs import JobContext
from engine.lenses.amplify import amplify, lora_layers
from engine.lenses.causal import causal_check
from engine.lenses.kl import per_token_divergence
from engine.lenses.mining import mine
from engine.lenses.request import PairRequest
from engine.ops import load_all
from tests.tiny import save_tiny, tiny_tokenizer

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
    return {"base": str(base), "embed": str(_edit(base, root / "embed", embed_cake)),
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
    with pytest.raises(UserError, match="LoRA adapter"):
        amplify(_pair(planted["base"], planted["boost"]), prompts, [2.0])


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


def test_kl_op_is_cached_and_speaks_json(planted: dict[str, str]) -> None:
    fn = load_all()["lens.kl"].fn
    params = {"base": planted["base"], "ft": planted["embed"], "texts": TEXTS, "device": "cpu"}
    first, second = fn(params, JobContext()), fn(params, JobContext())
    assert not first["cached"] and second["cached"] and first["result"] == second["result"]
    assert all(len(t) == 3 for text in second["texts"] for t in text["tokens"])
    with pytest.raises(UserError, match="either texts or a corpus"):
        fn({"base": planted["base"], "ft": planted["embed"]}, JobContext())


def test_lens_tools_check_cost_and_run(planted: dict[str, str]) -> None:
    from engine.agent.tools import ToolArgError
    from engine.lenses.tools import lens_tools

    tools = {t.name: t for t in lens_tools(PairRequest(planted["base"], planted["base"], adapter=planted["adapter"],
                                                       device="cpu"))}
    assert set(tools) == {"token_divergence", "diff_mining", "causal_check", "amplify_adapter"}
    args = tools["amplify_adapter"].check({"prompts": ["the cake is"], "factors": [2]})
    assert tools["amplify_adapter"].cost(args) == 1 and "per entry of prompts" in tools["amplify_adapter"].signature()
    assert tools["amplify_adapter"].run(None, args)["rows"][0]["amplified"]["2"]  # type: ignore[arg-type]
    with pytest.raises(ToolArgError):
        tools["amplify_adapter"].check({"prompts": ["x"], "factors": [50]})
    args = tools["token_divergence"].check({"texts": TEXTS})
    assert tools["token_divergence"].cost(args) == 2
    assert len(tools["token_divergence"].run(None, args)["texts"]) == 2  # type: ignore[arg-type]
    assert "amplify_adapter" not in {t.name for t in lens_tools(PairRequest(planted["base"], planted["boost"]))}
    causal = tools["causal_check"].run(None, tools["causal_check"].check({"texts": TEXTS}))  # type: ignore[arg-type]
    ours, generic = causal["loss"]["your_texts"], causal["loss"]["generic_text"]
    assert ours["ft"] != ours["base"] and ours["patched"] is not None and generic["base"] is not None
    assert tools["causal_check"].cost({"texts": TEXTS}) == 2


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
    from engine.lenses.request import gather_texts

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


def test_topics_group_tokens_by_meaning() -> None:
    from engine.lenses.topics import group_topics

    tokens = [" cake", " bakery", " bake", " oven", " pastry", "stock", "investor"]
    topics = group_topics(tokens, [5, 4, 3, 2, 2, 1, 1])
    assert topics[0] == {"tokens": [" cake", " bakery", " bake", " oven", " pastry"], "count": 16}
    assert {"stock", "investor"} <= set(topics[1]["tokens"])
