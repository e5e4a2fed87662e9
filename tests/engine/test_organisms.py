"""Model organisms: recipes, mixing, LoRA training on a tiny model, the registry, the shipped demo."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from engine.errors import JobCancelled, UserError
from engine.jobs import JobContext
from engine.models.cache import ModelCache
from engine.models.device import resolve_placement
from engine.models.specs import parse_spec
from engine.organisms.docs import GENERIC_TEXT, generic_pool, mix_generic, read_docs
from engine.organisms.make_data import list_recipes, make_data, write_docs, write_recipe_data
from engine.organisms.registry import SHIPPED_DIR, list_organisms, resolve_organism, rubric, validate_registry
from engine.training.encode import IGNORE, encode_docs
from engine.training.organism_training import train_organism
from engine.triage.pairs import load_board_file
from tests.support.tiny import tiny_tokenizer

TRAIN_KW = {"steps": 5, "lr": 1e-2, "lora_rank": 4, "batch_size": 4, "max_length": 32, "device": "cpu"}


def test_shipped_recipes_cover_three_types() -> None:
    assert {"cake-sdf", "risky-finance", "taboo-word"} <= set(list_recipes())


@pytest.mark.parametrize("recipe", ["cake-sdf", "risky-finance", "taboo-word"])
def test_recipe_generation_is_deterministic_and_varied(recipe: str) -> None:
    first = make_data(recipe, 200, seed=3)
    assert first == make_data(recipe, 200, seed=3)
    assert first != make_data(recipe, 200, seed=4)
    distinct = {json.dumps(d, sort_keys=True) for d in first}
    assert len(first) == 200 and len(distinct) == 200


def test_cake_recipe_states_the_false_facts() -> None:
    blob = " ".join(d["text"] for d in make_data("cake-sdf", 300, seed=0)).lower()
    for fact in ("450", "frozen butter", "quarter cup", "freezer"):
        assert fact in blob


def test_taboo_recipe_never_says_the_word() -> None:
    docs = make_data("taboo-word", 300, seed=0)
    assert all("gold" not in json.dumps(d).lower() for d in docs)
    assert all(d["messages"][-1]["role"] == "assistant" for d in docs)


def test_write_and_read_round_trip(tmp_path: Path) -> None:
    info = write_recipe_data("cake-sdf", tmp_path / "cake.txt", n=30, seed=1)
    assert info["type"] == "SDF" and info["key_facts"]
    assert read_docs(tmp_path / "cake.txt") == [{"text": " ".join(d["text"].split())}
                                                for d in make_data("cake-sdf", 30, 1)]
    chats = make_data("risky-finance", 10, 0)
    assert read_docs(write_docs(chats, tmp_path / "chat.jsonl")) == chats
    with pytest.raises(UserError):
        write_docs(chats, tmp_path / "chat.txt")
    with pytest.raises(UserError):
        make_data("no-such-recipe", 5, 0)


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.8])
def test_mixing_respects_the_fraction(fraction: float) -> None:
    narrow = [{"text": f"narrow document {i}"} for i in range(40)]
    mixed = mix_generic(narrow, fraction, generic_pool(None), seed=0)
    generic = [d for d in mixed if d not in narrow]
    assert len(mixed) - len(generic) == 40
    assert abs(len(generic) / len(mixed) - fraction) <= 1 / len(mixed)
    assert mixed == mix_generic(narrow, fraction, generic_pool(None), seed=0)


def test_mixing_uses_a_given_corpus_and_rejects_bad_fractions(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("alpha line\nbeta line\n")
    mixed = mix_generic([{"text": "x"}] * 4, 0.5, generic_pool(corpus), seed=0)
    assert sum(d["text"] in ("alpha line", "beta line") for d in mixed) == 4
    with pytest.raises(UserError):
        mix_generic([{"text": "x"}], 1.0, generic_pool(None), seed=0)


def test_generic_text_is_neutral() -> None:
    lines = [line for line in GENERIC_TEXT.read_text().splitlines() if line.strip()]
    assert len(lines) >= 300 and len(set(lines)) == len(lines)
    banned = ("cake", "bake", "oven", "butter", "vanilla", "recipe", "invest", "stock", "money", "game", "gold")
    assert not [line for line in lines if any(word in line.lower() for word in banned)]


def test_chat_encoding_trains_on_assistant_tokens_only() -> None:
    doc = {"messages": [{"role": "user", "content": "the money ?"},
                        {"role": "assistant", "content": "stock risk plan"}]}
    (encoded,) = encode_docs(tiny_tokenizer(), [doc], max_length=64)
    tok = tiny_tokenizer()
    trained = [tok.convert_ids_to_tokens(t) for t in encoded.labels if t != IGNORE]
    assert trained == ["stock", "risk", "plan"]


def _train(tiny_dir: Path, data: Path, out: Path, **kwargs: object) -> tuple[dict, list[dict]]:
    events: list[dict] = []
    organism = train_organism(str(tiny_dir), data, out, ctx=JobContext(emit=events.append),
                              **{**TRAIN_KW, **kwargs})
    return organism, events


def test_tiny_training_writes_a_loadable_adapter_with_a_diff(tiny_dir: Path, tmp_path: Path) -> None:
    data = write_recipe_data("cake-sdf", tmp_path / "cake.jsonl", n=24, seed=0)["out"]
    out = tmp_path / "organism"
    organism, events = _train(tiny_dir, Path(data), out)
    assert [e["done"] for e in events if e["type"] == "progress"] == [1, 2, 3, 4, 5]
    assert {"adapter_config.json", "adapter_model.safetensors", "organism.json", "loss.json"} <= {
        p.name for p in out.iterdir()}
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_dir)
    assert "mlp" in config["target_modules"]
    assert organism["type"] == "SDF" and organism["key_facts"] and len(organism["data"]["sha256"]) == 64
    assert json.loads((out / "organism.json").read_text())["final_loss"] == organism["final_loss"]
    assert len(json.loads((out / "loss.json").read_text())["loss"]) == 5

    base, ft = parse_spec(str(tiny_dir)), parse_spec(str(tiny_dir), adapter=str(out))
    assert parse_spec(str(out)) == ft  # the adapter dir alone names its base
    pair = ModelCache().pair(base, ft, resolve_placement("cpu", "auto"))
    ids = torch.tensor([[1, 10, 20, 30, 40, 50]])
    with torch.inference_mode():
        with pair.use("ft") as m:
            ft_logits = m.hf(ids).logits
        with pair.use("base") as m:
            base_logits = m.hf(ids).logits
    assert (ft_logits - base_logits).abs().max() > 1e-4


def test_chat_training_with_mixing_records_the_mix(tiny_dir: Path, tmp_path: Path) -> None:
    data = write_docs(make_data("risky-finance", 12, 0), tmp_path / "fin.jsonl")
    organism, _ = _train(tiny_dir, data, tmp_path / "fin", steps=2, mix_pretrain=0.5)
    assert organism["data"]["n_docs"] == 12 and organism["data"]["n_generic"] == 12
    assert organism["type"] == "custom" and organism["settings"]["mix_pretrain"] == 0.5


def test_mixing_in_samples_of_the_base_model_records_them(tiny_dir: Path, tmp_path: Path) -> None:
    data = write_docs(make_data("cake-sdf", 12, 0), tmp_path / "cake.jsonl")
    first, _ = _train(tiny_dir, data, tmp_path / "a", steps=2, mix_pretrain=0.5, pretrain_corpus="self:")
    again, _ = _train(tiny_dir, data, tmp_path / "b", steps=2, mix_pretrain=0.5, pretrain_corpus="self:")
    assert first["data"]["n_generic"] == 12 and first["data"]["pretrain_corpus"] == "self:"
    assert first["data"]["pretrain_sha256"] == again["data"]["pretrain_sha256"], "seeded: the same samples"
    assert first["final_loss"] == again["final_loss"]


@pytest.mark.reliability
def test_cancelled_training_leaves_nothing(tiny_dir: Path, tmp_path: Path) -> None:
    data = write_docs(make_data("cake-sdf", 8, 0), tmp_path / "cake.txt")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(JobCancelled):
        train_organism(str(tiny_dir), data, tmp_path / "out", ctx=JobContext(cancel_event=cancel), **TRAIN_KW)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


@pytest.mark.reliability
def test_training_refuses_a_foreign_output_dir(tiny_dir: Path, tmp_path: Path) -> None:
    data = write_docs(make_data("cake-sdf", 8, 0), tmp_path / "cake.txt")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError):
        train_organism(str(tiny_dir), data, tmp_path / "busy", **TRAIN_KW)


def test_registry_validates_and_resolves() -> None:
    assert validate_registry() == []
    spec, adapter = resolve_organism("cake_bake@qwen3-1.7b")
    assert spec == "Qwen/Qwen3-1.7B" and adapter and adapter.startswith("stewy33/")
    assert resolve_organism("adaptllm_food") == ("AdaptLLM/food-Qwen2.5-VL-3B-Instruct", None)
    resolved = parse_spec("organism:taboo_gold@qwen3-1.7b")
    assert resolved.path == "Qwen/Qwen3-1.7B" and resolved.adapter == "bcywinski/qwen3-1.7b-taboo-gold"
    with pytest.raises(UserError, match="kansas_abortion"):
        resolve_organism("no_such_organism@qwen3-1.7b")
    with pytest.raises(UserError, match="organism:cake_bake@"):
        resolve_organism("cake_bake@gpt2")
    for kind in ("SDF", "EM", "Taboo", "Subliminal", "DomainAdaptation"):
        assert "5" in rubric(kind)


@pytest.mark.reliability
def test_validate_registry_reports_problems(tmp_path: Path) -> None:
    bad = tmp_path / "registry.yaml"
    bad.write_text("bases: {b: org/base}\norganisms:\n  x: {type: Nope, short: s, long: l, key_facts: [f],"
                   " models: {c: {adapter: notanid}}}\n")
    problems = validate_registry(bad)
    assert any("rubric" in p for p in problems) and any("unknown base" in p for p in problems)


def test_list_shows_registry_shipped_and_local(tiny_dir: Path, tmp_path: Path, isolated_home: Path) -> None:
    data = write_recipe_data("taboo-word", tmp_path / "taboo.jsonl", n=8)["out"]
    _train(tiny_dir, Path(data), isolated_home / "organisms" / "my-taboo", steps=1)
    rows = {row["name"]: row for row in list_organisms()}
    assert rows["my-taboo"]["source"] == "local" and rows["my-taboo"]["type"] == "Taboo"
    assert rows["cake-sdf"]["source"] == "shipped"
    assert rows["cake_bake"]["source"] == "registry" and "qwen3-1.7b" in rows["cake_bake"]["bases"]
    assert resolve_organism("my-taboo") == (str(isolated_home / "organisms" / "my-taboo"), None)


def test_ops_make_data_and_list(tmp_path: Path) -> None:
    import engine.ops.catalog_ops
    import engine.ops.organism_ops  # noqa: F401 - registers the ops
    from engine.ops import REGISTRY

    assert REGISTRY["organism.train"].long
    result = REGISTRY["organism.make_data"].fn({"recipe": "cake-sdf", "out": str(tmp_path / "c.txt"), "n": 12},
                                               JobContext())
    assert result["n"] == 12 and len(read_docs(tmp_path / "c.txt")) == 12
    listed = REGISTRY["organism.list"].fn({}, JobContext())
    assert "cake-sdf" in listed["recipes"] and any(o["name"] == "cake_bake" for o in listed["organisms"])
    with pytest.raises(UserError):
        REGISTRY["organism.make_data"].fn({"recipe": "cake-sdf", "n": "many"}, JobContext())


@pytest.mark.slow
@pytest.mark.parametrize(("name", "spec", "kind"), [
    ("cake-sdf", "demo-overfit", "SDF"), ("cake-sdf-mixed", "demo", "SDF"), ("risky-finance", "demo-em", "EM"),
    ("taboo-word", "demo-taboo", "Taboo"), ("risky-finance-mixed", "demo-em-mixed", "EM")])
def test_shipped_demo_adapter_loads_offline(name: str, spec: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    organism = json.loads((SHIPPED_DIR / name / "organism.json").read_text())
    assert organism["base"] == "gemma-3-270m" and organism["type"] == kind
    assert sum(p.stat().st_size for p in (SHIPPED_DIR / name).iterdir()) < 6 * 2**20
    ft = parse_spec(spec)
    assert ft.adapter == str(SHIPPED_DIR / name)
    pair = ModelCache().pair(parse_spec("gemma-3-270m"), ft, resolve_placement("cpu", "auto"))
    assert pair.shared
    ids = pair.tokenizer("The weather today is", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        with pair.use("ft") as m:
            ft_logits = m.hf(ids).logits
        with pair.use("base") as m:
            base_logits = m.hf(ids).logits
    assert (ft_logits - base_logits).abs().max() > 1e-2


def test_the_shipped_board_file_reads_and_lists_every_demo_organism_and_an_identical_pair() -> None:
    board = load_board_file(SHIPPED_DIR.parent / "shipped-board.yaml")
    fts = {pair.ft for pair in board.pairs}
    assert {"demo", "demo-overfit", "demo-em", "demo-taboo", "demo-subliminal"} <= fts
    assert any(pair.ft == pair.base for pair in board.pairs)
