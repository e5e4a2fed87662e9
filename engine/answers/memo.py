"""Recall and keep whole answers: `ticket` makes the key of one request (None: the method is not kept, or its
params cannot be resolved here), `recall` gives the kept answer back as served, `keep` stores a fresh one, and
`prefill` keeps the answer to a request that is about to come (the workbench opening a run just triaged)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.answers import fingerprint
from engine.answers.rules import Answer, Rule, rule_for, typed
from engine.protocol.methods import Method
from store import answers
from store.errors import ActionableError
from store.hashing import content_key

log = logging.getLogger("difflens.engine")
KIND = "answer"


@dataclass(frozen=True)
class Ticket:
    """One request's place in the memo: its key and the rule it is kept by."""

    key: str
    method: str
    inputs: dict[str, Any]
    rule: Rule


def ticket(method: str, params: dict[str, Any]) -> Ticket | None:
    """The key of this request's answer, or None when it is not kept (a store fault here only costs the
    speed-up: the op runs and reports it)."""
    rule = rule_for(method)
    if rule is None or (parsed := typed(method, params)) is None:
        return None
    try:
        inputs = rule.inputs(parsed)
    except ActionableError:
        return None
    if inputs is None:
        return None
    key = content_key(KIND, {"method": method, "params": parsed.to_json(), "inputs": inputs,
                             "code": fingerprint.code(), "environment": fingerprint.environment()})
    return Ticket(key, method, inputs, rule)


def recall(ticket: Ticket) -> Answer | None:
    """The kept answer, as served (None: none kept, or a result it was built from is gone)."""
    try:
        answer = answers.get(ticket.key)
    except ActionableError as exc:
        log.warning("answers not recalled: %s", exc)
        return None
    return ticket.rule.served(answer) if answer is not None else None


def keep(ticket: Ticket, answer: Answer) -> None:
    """Keep a fresh answer, if it is complete."""
    if not ticket.rule.complete(answer):
        return
    try:
        answers.put(ticket.key, ticket.method, answer, ticket.rule.deps(ticket.inputs, answer))
    except ActionableError as exc:
        log.warning("answer of %s not kept: %s", ticket.method, exc)


def prefill(method: Method[Any, Any], params: dict[str, Any], answer: Callable[[], Answer],
            renew: bool = False) -> None:
    """Keep `answer()` as the answer to `method(params)` unless one is kept already (it is not computed then;
    `renew`: the caller has just stored more that the answer reads, so it replaces the kept one). Only a
    speed-up for the request to come: if `answer()` fails, that request computes it and says why."""
    if (found := ticket(method.name, params)) is None or (not renew and recall(found) is not None):
        return
    try:
        value = answer()
    except Exception as exc:  # e.g. a model needed where only the store may be read: the request will do it
        log.info("not kept ahead for %s: %s: %s", method.name, type(exc).__name__, exc)
        return
    keep(found, value)
