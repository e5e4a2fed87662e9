"""Tokens made readable: whitespace drawn, special tokens marked, control characters escaped."""

from __future__ import annotations

import re
from typing import Any

from rich.text import Text

from engine.protocol.results import token_pairs

_SPECIAL = re.compile(r"^(<\|?[^<>\s]{1,40}\|?>|\[[A-Z_]{2,20}\])$")
_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}


def visible_token(token: str) -> Text:
    """A token as it should read in a list: `␣bake`, `↵`, `<eos>` in its own style, `∅` for empty."""
    if token == "":
        return Text("∅", style="dim italic")
    if _SPECIAL.match(token):
        return Text(token, style="italic magenta")
    out = Text()
    for ch in token:
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch], style="dim cyan")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}", style="dim red")
        else:
            out.append(ch)
    return out


def prob_text(prob: float) -> str:
    """A probability as a fixed-width percentage."""
    return f"{prob * 100:5.1f}%" if prob >= 0.001 else "  <.1%"


def tokens_text(pairs: list[Any], with_probs: bool = False) -> Text:
    """Tokens on one line, whitespace and specials made visible (`[token, prob]` pairs or `[id, token, prob]`)."""
    text = Text()
    for i, (token, prob) in enumerate(token_pairs(pairs)):
        if i:
            text.append("  ")
        text.append_text(visible_token(token))
        if with_probs:
            text.append(f" {prob_text(prob).strip()}", style="dim")
    return text
