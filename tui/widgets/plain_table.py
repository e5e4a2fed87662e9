"""A DataTable whose cells are text: Textual reads a `str` cell as markup, so a session or pair name holding
`[/x]` would stop the app, and one holding escapes would reach the terminal."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from tui.render.plain_text import plain


class PlainTable(DataTable[Any]):
    """Every `str` or `Text` cell goes in through `plain`; numbers and other renderables as they are."""

    def add_row(self, *cells: Any, height: int | None = 1, key: str | None = None,
                label: Any = None) -> RowKey:
        return super().add_row(*(plain(c) if isinstance(c, str | Text) else c for c in cells), height=height,
                               key=key, label=label)
