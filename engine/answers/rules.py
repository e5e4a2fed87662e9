"""Which methods' answers are kept, and what each depends on besides its params, the store and `fingerprint`.

A rule's `inputs` resolve what the params name (a model spec to the identity of its weights, a run prefix to
the run's whole id) without loading anything; None means "not kept this time" and the op answers (and
reports any problem with the params itself). Only methods whose answer is a pure function of those inputs and
the content-keyed store are here: reports and readouts, never sampling that is not cached or agent runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.adl.stored_runs import KIND
from engine.corpus.sources import parse_corpus
from engine.models.specs import parse_spec
from engine.protocol import methods
from engine.protocol.methods import AdlSettings, LogitLens, RunParams
from engine.protocol.params import Params, ParamsError
from store import results
from store.errors import ActionableError

Answer = dict[str, Any]


@dataclass(frozen=True)
class Rule:
    """How one method's answers are kept. `inputs(params)`: what the answer depends on beyond params and store
    (None: do not keep or recall this one); `deps(inputs, answer)`: the stored results it was built from (it is
    recalled only while they are all there); `complete(answer)`: worth keeping (an answer that says a part is
    missing is not); `served(answer)`: the answer as recalled (e.g. marked cached, with no stage timings)."""

    inputs: Callable[[Any], dict[str, Any] | None]
    deps: Callable[[dict[str, Any], Answer], list[str]]
    complete: Callable[[Answer], bool] = lambda answer: True
    served: Callable[[Answer], Answer] = lambda answer: answer


def _pair(params: AdlSettings) -> dict[str, Any] | None:
    """The identities of both models' weights and of the corpus (as the run's own key has them)."""
    try:
        base = parse_spec(params.base, trust_remote_code=params.trust_remote_code)
        ft = parse_spec(params.ft, adapter=params.adapter, trust_remote_code=params.trust_remote_code)
        return {"base": base.identity(), "ft": ft.identity(), "corpus": parse_corpus(params.corpus).identity()}
    except (ActionableError, OSError, ValueError):
        return None  # the op says what is wrong with the spec


def _run(params: RunParams) -> dict[str, Any] | None:
    """The whole id of the run the params name (a unique prefix of it is enough, as for the op)."""
    found = results.keys_with_prefix(KIND, params.run.strip())
    return {"run": found[0]} if len(found) == 1 else None


def _lens(params: LogitLens) -> dict[str, Any] | None:
    """A lens through a named head file is not kept (the file may change under its name)."""
    return _run(params) if params.head is None else None


def _its_run(inputs: dict[str, Any], answer: Answer) -> list[str]:
    return [str(answer["run"])]


def _named_run(inputs: dict[str, Any], answer: Answer) -> list[str]:
    return [str(inputs["run"])]


def _cached_report(answer: Answer) -> Answer:
    return {**answer, "cached": True, "timings": dict.fromkeys(answer.get("timings", {}), 0.0)}


def _cached_run(answer: Answer) -> Answer:
    return {**answer, "cached": True, "memory_plan": None}


RULES: dict[str, Rule] = {
    methods.TRIAGE_PAIR.name: Rule(_pair, _its_run, served=_cached_report),
    methods.ADL_COMPUTE.name: Rule(_pair, _its_run, served=_cached_run),
    methods.ADL_SUMMARY.name: Rule(_run, _named_run, complete=lambda answer: answer.get("layer_choice") is not None),
    methods.LOGIT_LENS.name: Rule(_lens, _named_run),
    methods.PATCHSCOPE.name: Rule(_run, _named_run),
}


def rule_for(method: str) -> Rule | None:
    return RULES.get(method)


def typed(method: str, params: dict[str, Any]) -> Params | None:
    """The method's params dataclass, or None when they do not parse (the op gives the one-line error)."""
    try:
        return methods.BY_NAME[method].params.from_json(params)
    except ParamsError:
        return None
