"""The shipped neutral chat prompts used for steering (stories, lists, plans, poems; no organism's domain)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

PROMPTS_FILE = Path(__file__).resolve().parent.parent / "prompts" / "steering_prompts.json"


@cache
def default_prompts() -> tuple[str, ...]:
    return tuple(json.loads(PROMPTS_FILE.read_text(encoding="utf-8")))


def calibration_prompts(n: int = 3) -> list[str]:
    """The first `n` default prompts: open-ended enough that a steered model can drift anywhere."""
    return list(default_prompts()[:n])
