"""The shipped neutral chat prompts used for steering (stories, lists, plans, poems; no organism's domain)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PROMPTS_FILE = Path(__file__).resolve().parent.parent / "prompts" / "steering_prompts.json"
REFERENCE_PROMPTS_FILE = PROMPTS_FILE.with_name("reference_prompts.json")


@cache
def default_prompts() -> tuple[str, ...]:
    return tuple(json.loads(PROMPTS_FILE.read_text(encoding="utf-8")))


def calibration_prompts(n: int = 3) -> list[str]:
    """The first `n` default prompts: open-ended enough that a steered model can drift anywhere."""
    return list(default_prompts()[:n])



@dataclass(frozen=True)
class ReferencePrompts:
    """The reference's own prompts, verbatim (`--protocol paper`; source and licence in the file):
    `calibration`, the three its strength search steers; `final`, the 20 closed prompts of its final samples;
    `coherence_system`, its coherence grader's instructions with worked examples; `token_relevance_system` and
    `patchscope_system`, its token-relevance and Patchscope graders' instructions with theirs."""

    calibration: tuple[str, ...]
    final: tuple[str, ...]
    coherence_system: str
    token_relevance_system: str
    patchscope_system: str


@cache
def reference_prompts() -> ReferencePrompts:
    doc = json.loads(REFERENCE_PROMPTS_FILE.read_text(encoding="utf-8"))
    return ReferencePrompts(tuple(doc["calibration"]), tuple(doc["final"]), doc["coherence_system"],
                            doc["token_relevance_system"], doc["patchscope_system"])
