"""The typed door: every engine method has its params class and exactly one op; params are checked once."""

from __future__ import annotations

import math

import pytest

from engine.errors import UserError
from engine.jobs import JobContext
from engine.ops import REGISTRY, load_all
from engine.protocol import methods
from engine.protocol.params import ParamsError


def test_every_method_has_exactly_one_op_with_its_long_flag() -> None:
    ops = {name: op for name, op in load_all().items() if not name.startswith("test.")}
    assert sorted(ops) == sorted(m.name for m in methods.OPS)
    assert len({m.name for m in methods.OPS}) == len(methods.OPS)
    for method in methods.OPS:
        assert (ops[method.name].long, ops[method.name].doc) == (method.long, method.doc)


def test_params_parse_typed_fields_with_their_defaults() -> None:
    params = methods.AdlCompute.from_json({"base": "b", "ft": "f", "n": 8, "layers": [1, 2], "junk": 1, "k": None})
    assert (params.n, params.k, params.batch_size, params.layers, params.corpus) == (8, 5, 32, [1, 2], "self:")
    assert methods.AdlCompute.from_json(params.to_json()) == params
    assert "adapter" not in params.to_json()
    assert methods.SteerGenerate.from_json({"run": "r", "temperature": 1}).temperature == 1.0


@pytest.mark.parametrize(("data", "problem"), [
    ({"ft": "f"}, "missing parameter 'base'"),
    ({"base": "b", "ft": "f", "n": "many"}, "parameter 'n' must be int, got str"),
    ({"base": "b", "ft": "f", "n": True}, "parameter 'n' must be int, got bool"),
    ({"base": "b", "ft": "f", "layers": [1, "2"]}, "parameter 'layers' must be a list of int"),
    ({"base": "b", "ft": "f", "layer": 1.5}, "parameter 'layer' must be int or str, got float")])
def test_bad_params_are_one_line_problems(data: dict[str, object], problem: str) -> None:
    with pytest.raises(ParamsError) as info:
        methods.TriagePair.from_json(data)
    assert info.value.problem == problem and info.value.fix


@pytest.mark.parametrize("value", [math.nan, math.inf, 2e6])
def test_floats_are_finite_and_sane(value: float) -> None:
    with pytest.raises(ParamsError, match="finite number of magnitude at most"):
        methods.LensAmplify.from_json({"temperature": value})


def test_counts_are_positive_and_bounded() -> None:
    with pytest.raises(ParamsError, match="n_samples must be positive, got 0"):
        methods.SteerGenerate.from_json({"run": "r", "n_samples": 0})
    with pytest.raises(ParamsError, match="n_samples must be at most 1,000, got 5,000"):
        methods.SteerGenerate.from_json({"run": "r", "n_samples": 5000})
    assert methods.LensCausal.from_json({}).k is None


def test_an_op_answers_bad_params_as_a_user_error() -> None:
    load_all()
    with pytest.raises(UserError, match="parameter 'n' must be int, got str"):
        REGISTRY[methods.ORGANISM_MAKE_DATA.name].fn({"recipe": "cake-sdf", "out": "x", "n": "many"}, JobContext())
