"""The characters that are not plain text: the one list shared by what the store accepts as a name and what the
CLI and TUI print (`tui.render.plain_text`)."""

from __future__ import annotations

import re

# C0 but tab and newline, DEL, C1 (NEL and CSI among them), bidi marks, embeddings, overrides and isolates, and the
# line/paragraph separators: each can move the cursor, hide or reorder what follows, or talk to the terminal.
UNSAFE_CHARS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069"
UNSAFE = re.compile(f"[{UNSAFE_CHARS}]")
