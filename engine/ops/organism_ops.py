"""Organism ops: make a narrow corpus from a recipe, train a LoRA organism on it, list known organisms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.jobs import JobContext
from engine.ops import op
from engine.organisms.make_data import list_recipes, write_recipe_data
from engine.organisms.registry import list_organisms, local_dir
from engine.params import get, get_list
from engine.training.organism_training import SELF_CORPUS, train_organism


@op("organism.make_data")
def make_data_op(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Write a recipe's synthetic corpus (.txt or .jsonl) and its description sidecar."""
    out = Path(get(params, "out", str, required=True)).expanduser()
    return write_recipe_data(get(params, "recipe", str, required=True), out,
                             n=get(params, "n", int, 400), seed=get(params, "seed", int, 0))


@op("organism.train", long=True)
def train_op(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """LoRA-finetune a base model on narrow documents; writes a peft adapter dir + organism.json."""
    data = Path(get(params, "data", str, required=True)).expanduser()
    out_param = get(params, "out", str)
    out = Path(out_param).expanduser() if out_param else local_dir() / data.name.split(".")[0]
    corpus = get(params, "pretrain_corpus", str)
    pretrain = corpus if corpus in (None, SELF_CORPUS) else Path(corpus).expanduser()
    organism = train_organism(
        get(params, "base", str, required=True), data, out, ctx=ctx,
        steps=get(params, "steps", int, 60), lr=get(params, "lr", float, 2e-3),
        lora_rank=get(params, "lora_rank", int, 8), mix_pretrain=get(params, "mix_pretrain", float, 0.0),
        pretrain_corpus=pretrain, seed=get(params, "seed", int, 0),
        batch_size=get(params, "batch_size", int, 8), max_length=get(params, "max_length", int, 64),
        target_modules=get_list(params, "target_modules", str), device=get(params, "device", str, "auto"))
    return {"out": str(out.resolve()), **organism}


@op("organism.list")
def list_op(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The paper's registry organisms, the shipped demos, local organisms and the data recipes."""
    return {"organisms": list_organisms(), "recipes": list_recipes()}
