"""The pair a lens runs on, named as the user typed it, and the texts it reads.

A lens result's cache key is built from `PairRequest.identity()` (weights, not names) plus the exact
texts (`store.hashing.json_sha256`), so a typed text, a corpus sample and a recipe sample all address results
by content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.corpus.sources import Example, load_examples, parse_corpus
from engine.errors import UserError
from engine.models.cache import MODELS
from engine.models.device import Placement, resolve_placement
from engine.models.pair import ModelPair
from engine.models.specs import TypedPair
from engine.steering.steering_prompts import default_prompts

if TYPE_CHECKING:
    from engine.adl.request import AdlRequest


@dataclass(frozen=True)
class PairRequest(TypedPair):
    """Base and finetuned model specs (adapter optional) and where they run."""

    base: str
    ft: str
    adapter: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False

    @classmethod
    def of_run(cls, request: AdlRequest) -> PairRequest:
        """The pair an ADL run was computed on (the agent's lens tools and `run`-addressed lens ops use it)."""
        return cls(base=request.base, ft=request.ft, adapter=request.adapter, device=request.device,
                   dtype=request.dtype, trust_remote_code=request.trust_remote_code)

    @property
    def placement(self) -> Placement:
        return resolve_placement(self.device, self.dtype)

    def pair(self) -> ModelPair:
        return MODELS.pair(self.base_spec, self.ft_spec, self.placement)

    def identity(self) -> dict[str, Any]:
        """What determines the weights and precision (part of every lens cache key)."""
        return {"base": self.base_spec.identity(), "ft": self.ft_spec.identity(),
                "dtype": self.placement.dtype_name}


def as_text(example: Example, tokenizer: Any) -> str:
    """A corpus example as plain text: chats go through the chat template when there is one."""
    if isinstance(example, str):
        return example
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(example, tokenize=False)
    return "\n".join(m.get("content", "") for m in example)


def gather_texts(texts: list[str] | None, corpus: str | None, n: int, seed: int, tokenizer: Any) -> list[str]:
    """Typed texts, or `n` seeded texts of a corpus; exactly one of the two."""
    if bool(texts) == bool(corpus):
        raise UserError("give either texts or a corpus", "pass --text T (repeatable) or --corpus SRC")
    if texts:
        if not all(t.strip() for t in texts):
            raise UserError("an empty text was given", "pass non-empty --text values")
        return list(texts)
    assert corpus is not None
    out = [as_text(e, tokenizer) for e in gather_examples(corpus, n, seed)]
    return [t for t in out if t.strip()]


def gather_examples(corpus: str, n: int, seed: int) -> list[Example]:
    """`n` seeded examples of a corpus of real text, chats kept as messages (for lenses that score their turns)."""
    spec = parse_corpus(corpus)
    if spec.kind in ("self", "chat"):
        raise UserError(f"this lens reads real text, not model samples ({spec.label()})",
                        "pass --corpus generic:, a file or hf:NAME")
    if n <= 0:
        raise UserError(f"n must be positive, got {n}", "pass -n 20 or more")
    return [e for e in load_examples(spec, n, seed) if (e.strip() if isinstance(e, str) else e)]


def chat_messages(n: int, seed: int, tokenizer: Any) -> list[list[dict[str, str]]]:
    """`n` neutral chats: a shipped steering prompt answered by a generic text."""
    replies = gather_texts(None, "generic:", n, seed, tokenizer)
    prompts = default_prompts()
    return [[{"role": "user", "content": prompts[i % len(prompts)]}, {"role": "assistant", "content": reply}]
            for i, reply in enumerate(replies)]
