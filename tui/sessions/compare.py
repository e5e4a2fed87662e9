"""One line of text per answer, so a rerun's old and new answers can stand side by side."""

from __future__ import annotations

import dataclasses
from typing import Any

from rich.table import Table

from engine.protocol import methods
from engine.protocol.params import ParamsError
from engine.protocol.results import one_line
from tui.render.plain_text import plain
from tui.render.token_text import visible_token
from tui.sessions.rerun import Step


def _token(token: str) -> str:
    return visible_token(token).plain


def describe_call(method: str, params: dict[str, Any]) -> str:
    """The question: method and the params that matter to a reader (those set other than to their default)."""
    keys = ("base", "ft", "layer", "pos", "source", "strengths", "prompts", "texts", "corpus", "ft_corpus", "factors",
            "mode", "k")
    known = methods.BY_NAME.get(method)
    defaults = {f.name: f.default for f in dataclasses.fields(known.params)} if known is not None else {}
    shown = {k: params[k] for k in keys if params.get(k) and not (k in defaults and params[k] == defaults[k])}
    return method + "".join(f"\n  {k}={one_line(v, 60)}" for k, v in shown.items())


def summarize(method: str, result: dict[str, Any] | None, error: str = "") -> str:
    """The answer in a few lines (the same gist a pane would show), as the method's result says it."""
    if result is None:
        return f"(no answer: {error})" if error else "(no answer)"
    known = methods.BY_NAME.get(method)
    if known is None:
        return one_line(result)
    try:
        return str(known.result.from_json(result).summary(_token))
    except ParamsError as exc:
        return f"(an answer that does not read: {exc.problem})"


def compare_table(steps: list[Step], old_label: str, new_label: str) -> Table:
    """A Rich table: question | old answer | new answer (also printed by `--print`)."""
    table = Table(expand=True, show_lines=True)
    table.add_column("question", ratio=1, style="bold")
    table.add_column(old_label, ratio=2)
    table.add_column(new_label, ratio=2)
    for step in steps:
        table.add_row(plain(describe_call(step.method, step.params)), plain(summarize(step.method, step.old)),
                      plain(summarize(step.method, step.new, step.error)))
    return table
