"""Top tokens of the selected cell: logit lens and Patchscope side by side."""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui.render.token_text import prob_text, visible_token
from tui.state import TokensState


def token_lines(tokens: tuple[tuple[str, float], ...], limit: int, highlight: tuple[str, ...] = ()) -> Text:
    """`limit` tokens, one per line: probability then the visible token (selected ones in bold)."""
    out = Text(no_wrap=True, overflow="ellipsis")
    for i, (token, prob) in enumerate(tokens[:limit]):
        if i:
            out.append("\n")
        out.append(prob_text(prob) + " ", style="dim")
        shown = visible_token(token)
        if token in highlight:
            shown.stylize("bold green")
        out.append_text(shown)
    return out


class TokensPane(Widget):
    """What the selected cell says: logit lens (of diff, base or ft) | Patchscope at the chosen scale."""

    tokens: reactive[TokensState] = reactive(TokensState)

    def watch_tokens(self, tokens: TokensState) -> None:
        self.border_title = f"top tokens · L{tokens.layer} p{tokens.pos}"
        self.refresh()

    def render(self) -> RenderableType:
        state = self.tokens
        limit = max(1, (self.content_region.height or 10) - 1)
        lens_head = Text.assemble(("lens", "bold"), f" of {state.source}",
                                  (f" · {state.head} head" if state.head else "", "dim"))
        idx = state.shown_scale
        if idx is None:
            patch_head = Text("Patchscope", style="bold")
        else:
            scale = state.scales[idx][0]
            best = state.best_scale is not None and abs(scale - state.best_scale) < 1e-9
            patch_head = Text.assemble(("Patchscope", "bold"), f" scale {scale:g}",
                                       (" (best)" if best else "", "green"),
                                       (f" · {idx + 1} of {len(state.scales)} scales, [ ] pick", "dim"),
                                       (f" · {state.patch_judge}" if state.patch_judge else "", "dim"))
        lens = token_lines(state.lens, limit) if state.lens else Text(state.lens_status, style="dim")
        if idx is None:
            patch = Text(state.patch_status, style="dim")
        else:
            patch = token_lines(state.scales[idx][1], limit, state.selected)
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1, overflow="ellipsis", no_wrap=True)
        grid.add_column(ratio=1, overflow="ellipsis", no_wrap=True)
        grid.add_row(lens_head, patch_head)
        grid.add_row(lens, patch)
        return grid
