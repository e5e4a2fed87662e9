"""Rich renderings of the `lens.*` results, shared by the CLI commands and the TUI's lens screens.

One renderer per result kind, so `difflens kl` in a shell and the `d` screen in the workbench paint the same
values the same way (viridis background = per-token KL, the palette of the layer heatmap).
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Column, Table
from rich.text import Text

from engine.protocol.results import AmplifyAnswer, CausalAnswer, KlAnswer, MineAnswer, PcaAnswer, Steered
from tui.render.palette import cell_style, legend_bar, step_for
from tui.render.plain_text import plain
from tui.render.token_text import visible_token

METRICS = {"kl": (1, "KL"), "diff_norm": (2, "‖diff‖")}  # index into a `[token, kl, diff_norm]` triple


def heat_line(tokens: list[list[Any]], peak: float, metric: str = "kl") -> Text:
    """Tokens of one text on the colour scale [0, peak] of `metric` (KL sits on the token the prediction follows).

    Spaces stay spaces so the text reads as text; only line breaks are made visible."""
    index = METRICS[metric][0]
    out = Text()
    for token in tokens:
        out.append(token[0].replace("\n", "⏎") or "∅", style=cell_style(step_for(token[index], 0.0, peak)))
    return out


def _names(top: Any) -> str:
    return ", ".join(f"{t[0]!r} {t[1]:.2f}" if isinstance(t, list | tuple) else repr(t) for t in (top or [])[:3]) or "—"


def divergence_view(result: KlAnswer, snippets: bool = False, metric: str = "kl") -> Text:
    """Each text (or, with `snippets`, each top max-KL snippet) painted by `metric`, its most divergent spot,
    the stats."""
    shown = result.top if snippets else result.texts
    index, name = METRICS[metric]
    peak = max((t[index] for text in shown for t in text.tokens), default=0.0)
    out = Text()
    for text in shown:
        out.append_text(heat_line(text.tokens, peak, metric))
        out.append("\n")
        if (top := text.max) is not None:
            out.append(f"most divergent after {top.token!r} (KL {top.kl:.2f}): ", style="bold")
            out.append(f"base predicts {_names(top.base_top)}; finetuned predicts {_names(top.ft_top)}\n")
        out.append("\n")
    stats = result.stats
    out.append(f"layer {'?' if result.layer is None else result.layer}: mean KL {stats.mean_kl:.3f}, max "
               f"{stats.max_kl:.2f}, mean ‖diff‖ {stats.mean_diff_norm:.1f} over "
               f"{stats.n_tokens} tokens of {stats.n_texts} texts   ", style="dim")
    out.append_text(legend_bar(20))
    out.append(f"  {name} 0 … {peak:.2f}", style="dim")
    return out


def mining_table(result: MineAnswer) -> Table:
    """The mined tokens by count; each with the context it was most pushed up after (token appended, bold)."""
    table = Table("token", "times in top-k", "share of positions", "mean Δ log p", "where it was pushed up most",
                  expand=True,
                  title=f"top-{'?' if result.top_k is None else result.top_k} of finetuned − base over "
                        f"{result.n_positions} positions of {result.n_texts} texts", title_justify="left")
    for t in result.tokens:
        example = Text()
        if t.examples:
            example.append("…" + t.examples[0].context.replace("\n", "⏎")[-60:], style="dim")
            example.append(t.token.replace("\n", "⏎"), style="bold reverse")
        table.add_row(Text(visible_token(t.token).plain, style="dim" if t.trivial else "bold"), str(t.count),
                      f"{t.share:.2f}", f"{t.mean_diff:.2f}", example)
    return table


def topics_view(result: MineAnswer) -> Text:
    """The NMF topics, most prevalent first: the share of positions each leads, its tokens (empty when topics
    were not asked for)."""
    out = Text()
    if result.topics:
        out.append("topics: share of positions each leads, its tokens\n", style="bold")
    for topic in result.topics:
        out.append(f"{100 * topic.share:>5.1f} %  ", style="bold")
        out.append(", ".join(visible_token(t).plain for t in topic.tokens) + "\n")
    return out


def _loss(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def causal_table(result: CausalAnswer) -> Table:
    """Mean loss of base, finetune and patched finetune per text set, after the patched positions and overall."""
    patched = "base activations" if result.mode == "base" else "−mean diff added"
    table = Table(Column("texts", no_wrap=True), "scope", "base", "finetuned", "patched", "Δ patched − ft",
                  "share undone",
                  title=f"layer {result.layer}: first {result.k} positions ← {patched}",
                  title_justify="left", expand=True)
    for name, text_set in result.sets.items():
        for scope, s in (("after k", text_set.after_k), ("all", text_set.overall)):
            table.add_row(f"{name} ({text_set.n_texts})", scope, _loss(s.base), _loss(s.ft), _loss(s.patched),
                          _loss(s.delta), _loss(s.share_of_gain_removed))
    return table


def causal_summary(result: CausalAnswer) -> Text:
    """One line per text set: how the finetune moved the loss, and what share of that the patch takes back."""
    out = Text()
    for name, text_set in result.sets.items():
        overall = text_set.overall
        if overall.base is None or overall.ft is None:
            continue
        gain, share = overall.base - overall.ft, overall.share_of_gain_removed
        out.append(f"{name}: ", style="bold")
        out.append(f"the finetune {'lowers' if gain >= 0 else 'raises'} the loss by {abs(gain):.3f}; patching "
                   f"{'removes' if gain >= 0 else 'undoes'} " + ("—" if share is None else f"{100 * share:.1f} %")
                   + " of that\n")
    return out


CONTROL_NAMES = {"random_vector": "random vectors", "random_diff": "random diffs"}


def direction_table(result: CausalAnswer) -> Table:
    """Per text set: base, finetuned and intervened loss, the effect, and each control's change (mean ± sd, max)."""
    how = "set to the other model's" if result.ablation == "base" else "projected out"
    model = "finetune" if result.patch_direction == "base_to_ft" else "base model"
    table = Table(Column("texts", no_wrap=True), "base", "finetuned", "intervened", "effect",
                  *[f"{name}: mean±sd (max)" for name in CONTROL_NAMES.values()], "share undone",
                  title=f"layer {result.layer}: the {model}'s component along the mean diff at position "
                        f"{result.pos} {how} at every token; {result.n_controls} controls of each kind",
                  title_justify="left", expand=True)
    for name, s in result.sets.items():
        spread = [s.spread.get(kind) for kind in CONTROL_NAMES]
        table.add_row(f"{name} ({s.n_texts})", _loss(s.base), _loss(s.ft), _loss(s.intervened),
                      Text("–" if s.effect is None else f"{s.effect:+.4f}", style="bold"),
                      *["–" if c is None else f"{c.mean:+.3f}±{c.std:.3f} ({c.max_abs:.2f})" for c in spread],
                      "–" if s.share_of_gain_removed is None else f"{100 * s.share_of_gain_removed:.1f} %")
    return table


def direction_summary(result: CausalAnswer) -> Text:
    """One line per text set: the effect's z and p against each kind of control, and the verdict."""
    out = Text()
    for name, s in result.sets.items():
        out.append(f"{name}: ", style="bold")
        parts = []
        for kind, label in CONTROL_NAMES.items():
            test = s.tests.get(kind)
            if test is not None and test.p is not None:
                z = "–" if test.z is None else f"{test.z:+.1f}"
                parts.append(f"z = {z}, p = {test.p:.3f} against {test.n_controls} {label}")
        out.append("; ".join(parts) + ": ")
        decided = s.verdict
        out.append(decided.line, style="bold" if decided.outside else "" if decided.decided else "yellow")
        out.append("\n")
    return out


def causal_view(result: CausalAnswer) -> Group:
    """The causal answer of either mode: the loss table and its one-line reading per text set."""
    if result.mode == "direction":
        return Group(direction_table(result), direction_summary(result))
    return Group(causal_table(result), causal_summary(result))


def _words(tokens: list[Any]) -> str:
    return ", ".join(visible_token(t[0]).plain for t in tokens[:8])


def pca_view(result: PcaAnswer, selected: int | None = None) -> Group:
    """The components by explained variance, each with its logit-lens tokens both ways (`selected` marked)."""
    table = Table("#", "explained", "cos(mean)", "top dim", "+ tokens", "− tokens", expand=True,
                  title=f"PCA of ft − base at layer {result.layer}, position {result.pos} over "
                        f"{result.n_texts} texts", title_justify="left")
    for c in result.components:
        mark = "▶ " if c.index == selected else ""
        table.add_row(f"{mark}{c.index}", f"{100 * c.explained_variance_ratio:.1f} %",
                      f"{c.cos_with_mean:+.2f}", "{} ({:.0%})".format(*(c.top_dim or ["–", 0])),
                      _words(c.tokens), _words(c.negative_tokens))
    note = Text(f"the mean diff (‖{result.mean_norm:.1f}‖ from the same passes) explains "
                f"{100 * result.mean_share:.1f} % of E‖d‖² and reads "
                f"{_words(result.mean_tokens) or '–'}; mean ‖d‖ per text "
                f"{result.mean_diff_norm:.1f}", style="dim")
    return Group(table, note)


def component_steering_view(result: Steered) -> Table:
    """A principal component steered both ways beside the unsteered text, one row per prompt."""
    by_prompt: dict[str, dict[str, str]] = {}  # prompt → steered text by strength
    unsteered: dict[str, str] = {}
    for sample in result.samples:
        unsteered.setdefault(sample.prompt, sample.unsteered)
        by_prompt.setdefault(sample.prompt, {})[f"{sample.strength or 0:+g}"] = sample.steered
    columns = [f"{s:+g}" for s in result.strengths]
    index = result.component.index if result.component is not None else None
    table = Table("prompt", *[f"α = {c}" for c in columns], "unsteered", show_lines=True, expand=True,
                  title=f"component {index} steered at layer {result.layer}", title_justify="left")
    for prompt, row in by_prompt.items():
        table.add_row(plain(prompt), *[plain(row.get(c, "")) for c in columns], plain(unsteered[prompt]))
    return table


def amplify_table(result: AmplifyAnswer) -> Table:
    """One row per prompt: base, finetune, then each amplified column (titled with what was scaled)."""
    factors = [f"{f:g}" for f in result.factors]
    what = "the adapter's delta" if result.method == "lora" else "the weight difference ft − base"
    table = Table("prompt", "base", "finetuned", *[f"×{f}" for f in factors], show_lines=True, expand=True,
                  title=f"{what} scaled in {result.scope or 'all'}", title_justify="left")
    for row in result.rows:
        table.add_row(plain(row.prompt), plain(row.base), plain(row.ft),
                      *[plain(row.amplified.get(f, "")) for f in factors])
    return table
