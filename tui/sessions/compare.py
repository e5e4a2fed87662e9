"""One line of text per answer, so a rerun's old and new answers can stand side by side."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from engine.protocol import methods
from tui.render.plain_text import plain
from tui.render.token_text import visible_token
from tui.sessions.rerun import Step
from tui.state import token_pairs

TOP = 8


def _tokens(raw: Any) -> str:
    return "  ".join(f"{visible_token(t).plain} {p:.2f}" for t, p in token_pairs(raw)[:TOP])


def _short(text: Any, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def describe_call(method: str, params: dict[str, Any]) -> str:
    """The question: method and the params that matter to a reader."""
    keys = ("base", "ft", "layer", "pos", "source", "strengths", "prompts", "texts", "corpus", "ft_corpus", "factors",
            "mode", "k")
    shown = {k: params[k] for k in keys if params.get(k)}
    return method + "".join(f"\n  {k}={_short(v, 60)}" for k, v in shown.items())


def summarize(method: str, result: dict[str, Any] | None, error: str = "") -> str:
    """The answer in a few lines (the same gist a pane would show)."""
    if result is None:
        return f"(no answer: {error})" if error else "(no answer)"
    if method in (methods.ADL_COMPUTE.name, methods.ADL_SUMMARY.name):
        r = result
        return f"{r.get('base')} → {r.get('ft')}\nrun {r.get('run')}  n={r.get('n')} k={r.get('k')}"
    if method == methods.LOGIT_LENS.name:
        return _tokens(result.get("tokens"))
    if method == methods.PATCHSCOPE.name:
        scales = result.get("scales") or []
        best = result.get("best_scale")
        at = min(scales, key=lambda s: abs(float(s["scale"]) - float(best or 0))) if scales else None
        return f"best scale {best}: " + (_tokens(at["tokens"]) if at else "")
    if method == methods.STEER_GENERATE.name:
        return "\n".join(f"[{i}] {_short(s.get('steered', ''))}" for i, s in enumerate(result.get("samples", [])[:3]))
    if method == methods.STEER_CALIBRATE.name:
        return f"α = {result.get('strength')}"
    if method == methods.AGENT_RUN.name:
        run = (result.get("runs") or [result])[0]
        answer = (run.get("result") or run).get("description", "")
        grade = run.get("grade")
        return _short(answer, 300) + (f"\ngrade {grade.get('score') if isinstance(grade, dict) else grade}" if grade
                                      else "")
    if method.startswith("lens."):
        return summarize_lens(method, result)
    return _short(result)


def summarize_lens(method: str, result: dict[str, Any]) -> str:
    """The gist of a `lens.*` answer: peak divergence, mined tokens, amplified text, or the loss shares."""
    if method == methods.LENS_KL.name:
        stats, top = result.get("stats") or {}, (result.get("top") or [{}])[0].get("max") or {}
        return (f"mean KL {stats.get('mean_kl', 0):.3f}, max {stats.get('max_kl', 0):.2f} after "
                f"{top.get('token', '')!r} (finetuned → {', '.join(repr(t[0]) for t in top.get('ft_top', [])[:3])})")
    if method == methods.LENS_MINE.name:
        return "  ".join(f"{visible_token(t['token']).plain} {t['count']}" for t in result.get("tokens", [])
                         if not t.get("trivial"))[:300]
    if method == methods.LENS_AMPLIFY.name:
        return "\n".join(f"×{f}: {_short(text)}" for row in result.get("rows", [])[:2]
                         for f, text in row.get("amplified", {}).items())
    if method == methods.LENS_CAUSAL.name and result.get("mode") == "direction":
        return "\n".join(f"{name}: ft {s['ft']} effect {s['effect']:+} ({s['verdict']['line']})"
                         for name, s in result.get("sets", {}).items())
    if method == methods.LENS_CAUSAL.name:
        return "\n".join(f"{name}: base {s['all']['base']} ft {s['all']['ft']} patched {s['all']['patched']}"
                         for name, s in result.get("sets", {}).items())
    return _short(result)


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
