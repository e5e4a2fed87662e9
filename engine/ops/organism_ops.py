"""Organism ops: make a narrow corpus from a recipe, train a LoRA organism on it (the list: `catalog_ops`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.jobs import JobContext
from engine.ops import op
from engine.organisms.make_data import write_recipe_data
from engine.organisms.registry import local_dir
from engine.protocol import methods
from engine.training.organism_training import SELF_CORPUS, train_organism


@op(methods.ORGANISM_MAKE_DATA)
def make_data_op(params: methods.MakeData, ctx: JobContext) -> dict[str, Any]:
    """A recipe's synthetic corpus (.txt or .jsonl) beside its description sidecar."""
    return write_recipe_data(params.recipe, Path(params.out).expanduser(), n=params.n, seed=params.seed)


@op(methods.ORGANISM_TRAIN)
def train_op(params: methods.TrainOrganism, ctx: JobContext) -> dict[str, Any]:
    """The adapter goes to `out`, else to the local organisms folder under the data file's name."""
    data = Path(params.data).expanduser()
    out = Path(params.out).expanduser() if params.out else local_dir() / data.name.split(".")[0]
    corpus = params.pretrain_corpus
    pretrain = corpus if corpus in (None, SELF_CORPUS) else Path(corpus).expanduser()
    organism = train_organism(
        params.base, data, out, ctx=ctx, steps=params.steps, lr=params.lr, lora_rank=params.lora_rank,
        mix_pretrain=params.mix_pretrain, pretrain_corpus=pretrain, seed=params.seed, batch_size=params.batch_size,
        max_length=params.max_length, target_modules=params.target_modules, device=params.device,
        checkpoints=params.checkpoints)
    return {"out": str(out.resolve()), **organism}

