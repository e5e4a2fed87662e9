"""Type a text, see where the two models disagree: per-token KL(ft‖base) painted on the text (issue 13).

The screen sends `lens.kl` for the run's pair through the app's `EngineLink` in a worker and paints the
answer; a token's background is its KL on the viridis scale of the heatmap (the value on a token is the
divergence of the prediction made after it), and the most divergent spot shows what each model predicted.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from tui.link import EngineLink
from tui.widgets.palette import cell_style, legend_bar, step_for
from tui.widgets.token_text import visible_token


def paint_divergence(result: dict[str, Any]) -> Text:
    """Each text's tokens on the KL colour scale, then its most divergent spot and the mean KL."""
    out = Text()
    texts = result.get("texts") or []
    peak = max((t[1] for text in texts for t in text.get("tokens", [])), default=0.0)
    for text in texts:
        for token, kl, _ in text.get("tokens", []):
            out.append_text(Text(visible_token(token).plain, style=cell_style(step_for(kl, 0.0, peak))))
        out.append("\n")
        top = text.get("max") or {}
        if top:
            out.append(f"most divergent after {top.get('token', '')!r} (KL {top.get('kl', 0):.2f}): ", style="bold")
            out.append(f"base predicts {_names(top.get('base_top'))}; finetuned predicts {_names(top.get('ft_top'))}\n")
        out.append("\n")
    stats = result.get("stats") or {}
    out.append(f"mean KL {stats.get('mean_kl', 0):.3f} over {stats.get('n_tokens', '?')} tokens   ", style="dim")
    out.append_text(legend_bar(20))
    out.append(f"  0 … {peak:.2f}", style="dim")
    return out


def _names(top: Any) -> str:
    return ", ".join(repr(t[0]) if isinstance(t, list | tuple) else repr(t) for t in (top or [])[:3]) or "—"


class DivergenceScreen(Screen[None]):
    """An input line and the painted answer; Escape goes back to the workbench."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, run: str, link: EngineLink) -> None:
        super().__init__()
        self.run = run
        self.link = link

    def compose(self) -> ComposeResult:
        yield Input(placeholder="type a text and press Enter: where do the two models disagree?", id="text")
        with VerticalScroll():
            yield Static("", id="painted")
        yield Footer()

    @on(Input.Submitted, "#text")
    def submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.query_one("#painted", Static).update(Text("computing per-token divergence…", style="dim"))
            self.divergence(event.value)

    @work(exclusive=True)
    async def divergence(self, text: str) -> None:
        result = await self.link.job("divergence", "lens.kl", {"run": self.run, "texts": [text]})
        if result is not None:
            self.query_one("#painted", Static).update(paint_divergence(result))
