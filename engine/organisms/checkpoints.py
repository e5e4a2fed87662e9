"""Adapter checkpoints kept along an organism's training (`organism train --checkpoints N`).

They live inside the organism folder, one peft adapter per step (`checkpoints/step-0040/`), and are addressed
as model specs by a path or as `ORGANISM@step-40`; step 0 is the base model itself. The folder is left out of
the organism's own content hash, so adding checkpoints does not change the final adapter's cached runs.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.errors import UserError

CHECKPOINTS_DIR = "checkpoints"
STEP_PATTERN = re.compile(r"step-(\d+)")


def step_name(step: int) -> str:
    return f"step-{step:04d}"


def checkpoint_steps(total: int, count: int) -> list[int]:
    """`count` steps spread evenly over a run of `total` steps, before the final one (which is the organism)."""
    if count < 0 or count >= total:
        raise UserError(f"--checkpoints must be between 0 and {total - 1} for {total} steps, got {count}",
                        "pass fewer checkpoints or more --steps")
    return sorted({round(i * total / (count + 1)) for i in range(1, count + 1)} - {0, total})


def list_checkpoints(organism: Path) -> list[tuple[int, Path]]:
    """The organism's checkpoints as (step, adapter folder), in training order (empty when it has none)."""
    folder = organism / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), path) for path in folder.iterdir()
             if (m := STEP_PATTERN.fullmatch(path.name)) and (path / "adapter_config.json").is_file()]
    return sorted(found)


def checkpoint_adapter(organism: Path, step: int) -> Path:
    """The adapter folder of `organism` at training step `step` (the organism itself at its last step)."""
    kept = dict(list_checkpoints(organism))
    if step in kept:
        return kept[step]
    raise UserError(f"{organism.name} has no checkpoint at step {step}",
                    f"kept steps: {', '.join(map(str, kept)) or 'none'} (train with --checkpoints N to keep some)")
