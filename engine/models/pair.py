"""The base/finetuned pair: two models, or one set of base weights with an adapter switched on and off."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from engine.errors import UserError
from engine.models.adapters import adapter_enabled
from engine.models.loading import LoadedModel

Side = Literal["base", "ft"]


@dataclass
class ModelPair:
    """`use(side)` yields the model to run for that side; with `shared`, both sides are one module."""

    base: LoadedModel
    ft: LoadedModel

    @property
    def shared(self) -> bool:
        return self.base is self.ft

    @property
    def tokenizer(self):
        return self.base.tokenizer

    @property
    def n_layers(self) -> int:
        return self.base.n_layers

    @property
    def d_model(self) -> int:
        return self.base.d_model

    @contextlib.contextmanager
    def use(self, side: Side) -> Iterator[LoadedModel]:
        """The side's model with its adapter on (the base side of a shared pair: off), under its lock."""
        model = self.ft if side == "ft" else self.base
        with adapter_enabled(model, not (self.shared and side == "base")):
            yield model

    def check_diffable(self) -> None:
        """Refuse pairs whose activations cannot be compared position by position."""
        if not self.shared:
            check_diffable(Shape.of(self.base), Shape.of(self.ft))


@dataclass(frozen=True)
class Shape:
    """What decides whether two models are diffable; small enough to keep after a model is released."""

    label: str
    vocab: dict[str, int]
    n_layers: int
    d_model: int

    @classmethod
    def of(cls, model: LoadedModel) -> Shape:
        return cls(model.spec.label(), model.tokenizer.get_vocab(), model.n_layers, model.d_model)


def check_diffable(b: Shape, f: Shape) -> None:
    problems = []
    if b.vocab != f.vocab:
        problems.append(f"tokenizer vocabularies differ ({len(b.vocab)} vs {len(f.vocab)} tokens)")
    if b.n_layers != f.n_layers:
        problems.append(f"layer counts differ ({b.n_layers} vs {f.n_layers})")
    if b.d_model != f.d_model:
        problems.append(f"hidden sizes differ ({b.d_model} vs {f.d_model})")
    if problems:
        raise UserError(f"{b.label} and {f.label} are not diffable: " + "; ".join(problems),
                        "pass a finetuned model derived from the same base model")
