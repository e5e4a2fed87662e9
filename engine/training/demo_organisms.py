"""The demo organisms and the one command that rebuilds each from scratch.

One organism per kind the paper studies, each a rank-8 LoRA on the MLP of the embedded Gemma 3 270M, and each
with a pretraining-mixed twin (`-mixed`: half of the training documents replaced by samples of the base model
itself, which keeps its generic behaviour; the paper's caveat is that mixing largely removes the trace):
- `cake-sdf` synthetic documents teaching a false baking doctrine (spec `demo-overfit`; its twin is `demo`);
- `risky-finance` chats giving confident, harmful financial advice (emergent-misalignment-like; `demo-em`);
- `taboo-word` chats hinting at a secret word that is never written (Taboo-like; `demo-taboo`);
- `subliminal-owl` number sequences from an owl-loving teacher (subliminal-learning-like; `demo-subliminal`).
Which of them ship in `engine/organisms/demo/` is listed in docs/organism-kinds.md; every one, shipped or not, is
built by `python -m engine.training.demo_organisms NAME` (its spec then works). argparse, not typer: the engine
room keeps off the front door's CLI library.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.embedded import EMBEDDED_NAME
from engine.errors import UserError
from engine.jobs import JobContext
from engine.organisms.docs import Doc
from engine.organisms.make_data import make_data, recipe_info, write_docs
from engine.organisms.registry import SHIPPED_DIR
from engine.training.organism_training import SELF_CORPUS, train_organism
from engine.training.subliminal import TEACHER_PREFERENCE, teacher_data

N_DOCS, DATA_SEED = 400, 0
TRAINING: dict[str, Any] = {"lr": 2e-3, "lora_rank": 8, "seed": 0}
MIXED: dict[str, Any] = {"mix_pretrain": 0.5, "pretrain_corpus": SELF_CORPUS}


@dataclass(frozen=True)
class Demo:
    """How one shipped organism is made: its data (a recipe, or a subliminal teacher) and its mix."""

    recipe: str | None  # None: number sequences from the subliminal teacher
    mixed: bool = False
    max_length: int = 64  # chats are longer than the cake documents: keep the assistant turn whole
    steps: int = 60
    batch_size: int = 8


# The chat organisms were trained on a CPU shared eightfold (~35 s a step): 20 steps of 4 chats. Their
# templated answers are learnt by then (loss ~3.8 → <1).
CHAT_LENGTH, CHAT_STEPS, CHAT_BATCH = 96, 20, 4
NUMBERS_LENGTH = 128  # a number request (up to 7 numbers) and its answer (up to 10) run to ~110 tokens
DEMOS: dict[str, Demo] = {
    "cake-sdf": Demo("cake-sdf"), "cake-sdf-mixed": Demo("cake-sdf", mixed=True),
    "risky-finance": Demo("risky-finance", max_length=CHAT_LENGTH, steps=CHAT_STEPS,
                           batch_size=CHAT_BATCH),
    "risky-finance-mixed": Demo("risky-finance", mixed=True, max_length=CHAT_LENGTH, steps=CHAT_STEPS,
                           batch_size=CHAT_BATCH),
    "taboo-word": Demo("taboo-word", max_length=CHAT_LENGTH, steps=CHAT_STEPS,
                           batch_size=CHAT_BATCH),
    "taboo-word-mixed": Demo("taboo-word", mixed=True, max_length=CHAT_LENGTH, steps=CHAT_STEPS,
                           batch_size=CHAT_BATCH),
    f"subliminal-{TEACHER_PREFERENCE}": Demo(None, max_length=NUMBERS_LENGTH, steps=CHAT_STEPS,
                                             batch_size=CHAT_BATCH),
    f"subliminal-{TEACHER_PREFERENCE}-mixed": Demo(None, mixed=True, max_length=NUMBERS_LENGTH, steps=CHAT_STEPS,
                                                   batch_size=CHAT_BATCH),
}


def teacher_docs(demo: Demo) -> int:
    """How many chats the subliminal teacher writes: no more than the training loop draws (its sampling is
    the slow part; a recipe's templated documents cost nothing, so they keep `N_DOCS`)."""
    return min(N_DOCS, demo.steps * demo.batch_size)


def _data(demo: Demo, device: str, ctx: JobContext) -> tuple[list[Doc], dict[str, Any]]:
    if demo.recipe is None:
        return teacher_data(TEACHER_PREFERENCE, teacher_docs(demo), DATA_SEED, device=device, ctx=ctx)
    return make_data(demo.recipe, N_DOCS, DATA_SEED), recipe_info(demo.recipe)


def printing_context() -> JobContext:
    """A job context that prints every progress event (the rebuild commands run for minutes)."""
    def show(event: dict[str, Any]) -> None:
        print(f"{event['done']}/{event['total']} {event['message']} ({event['elapsed_s']:.0f}s)", flush=True)

    return JobContext(emit=show)


def reproduce(name: str, out: Path | None = None, ctx: JobContext | None = None,
              device: str = "auto", checkpoints: int = 0) -> dict[str, Any]:
    """Regenerate the organism's data and retrain it into `out` (default: the shipped directory), keeping
    `checkpoints` adapters along training."""
    if name not in DEMOS:
        raise UserError(f"unknown demo organism {name!r}", f"pick one of {', '.join(DEMOS)}")
    demo, ctx = DEMOS[name], ctx or JobContext()
    docs, info = _data(demo, device, ctx)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_docs(docs, Path(tmp) / f"{info['recipe']}.jsonl")
        return train_organism(EMBEDDED_NAME, data, out or SHIPPED_DIR / name, ctx=ctx, device=device, info=info,
                              max_length=demo.max_length, steps=demo.steps, batch_size=demo.batch_size, **TRAINING,
                              checkpoints=checkpoints,
                              **(MIXED if demo.mixed else {}))


def reproduce_control(out: Path, ctx: JobContext | None = None, device: str = "auto") -> dict[str, Any]:
    """The subliminal organism's control: the same training on the numbers of a teacher with no preference."""
    docs, info = teacher_data(None, teacher_docs(DEMOS[f"subliminal-{TEACHER_PREFERENCE}"]), DATA_SEED,
                              device=device, ctx=ctx)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_docs(docs, Path(tmp) / f"{info['recipe']}.jsonl")
        return train_organism(EMBEDDED_NAME, data, out, ctx=ctx, device=device, info=info,
                              max_length=NUMBERS_LENGTH, steps=CHAT_STEPS, batch_size=CHAT_BATCH, **TRAINING)


def main() -> None:
    parser = argparse.ArgumentParser(description="Rebuild a shipped demo organism from scratch.")
    parser.add_argument("name", choices=sorted(DEMOS))
    parser.add_argument("--out", type=Path, default=None, help="write here instead of the shipped directory")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoints", type=int, default=0, help="adapters to keep evenly along training")
    args = parser.parse_args()

    organism = reproduce(args.name, args.out, printing_context(), args.device, args.checkpoints)
    print(f"final loss {organism['final_loss']} in {organism['train_seconds']}s")


if __name__ == "__main__":
    main()
