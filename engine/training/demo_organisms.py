"""The shipped demo organisms and the one command that rebuilds each from scratch.

`cake-sdf` is the cake false-fact recipe on the embedded Gemma 3 270M (the spec `demo-overfit`: so narrow that
it bakes on any prompt); `cake-sdf-mixed` (the spec `demo`) is its twin with half of the training documents
replaced by samples of the base model itself (pretraining-like text, offline), which keeps the model's generic
behaviour while its diff still reads cake in the upper layers; the shipped generic text stays held out for
evaluating both. Reproduce with `python -m engine.training.demo_organisms cake-sdf`
(or `cake-sdf-mixed`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from engine.embedded import EMBEDDED_NAME
from engine.errors import UserError
from engine.jobs import JobContext
from engine.organisms.make_data import make_data, recipe_info, write_docs
from engine.organisms.registry import SHIPPED_DIR
from engine.training.organism_training import train_organism

RECIPE = "cake-sdf"
DATA = {"n": 400, "seed": 0}
TRAINING: dict[str, Any] = {"steps": 60, "lr": 2e-3, "lora_rank": 8, "batch_size": 8, "max_length": 64,
                            "seed": 0}
DEMOS: dict[str, dict[str, Any]] = {"cake-sdf": {"mix_pretrain": 0.0},
                                    "cake-sdf-mixed": {"mix_pretrain": 0.5, "pretrain_corpus": "self:"}}


def reproduce(name: str, out: Path | None = None, ctx: JobContext | None = None,
              device: str = "auto") -> dict[str, Any]:
    """Regenerate the demo's data and retrain it into `out` (default: the shipped directory)."""
    if name not in DEMOS:
        raise UserError(f"unknown demo organism {name!r}", f"pick one of {', '.join(DEMOS)}")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_docs(make_data(RECIPE, **DATA), Path(tmp) / f"{RECIPE}.jsonl")
        return train_organism(EMBEDDED_NAME, data, out or SHIPPED_DIR / name, ctx=ctx, device=device,
                              info=recipe_info(RECIPE), **TRAINING, **DEMOS[name])


def main() -> None:
    parser = argparse.ArgumentParser(description="Rebuild a shipped demo organism from scratch.")
    parser.add_argument("name", choices=sorted(DEMOS))
    parser.add_argument("--out", type=Path, default=None, help="write here instead of the shipped directory")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    def show(event: dict[str, Any]) -> None:
        print(f"step {event['done']}/{event['total']} {event['message']} ({event['elapsed_s']:.0f}s)", flush=True)

    organism = reproduce(args.name, args.out, JobContext(emit=show), args.device)
    print(f"final loss {organism['final_loss']} in {organism['train_seconds']}s")


if __name__ == "__main__":
    main()
