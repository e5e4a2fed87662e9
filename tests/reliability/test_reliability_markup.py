"""Text from outside printed as text (issue 31): names, pairs, notes and model output that hold Rich markup or
terminal escapes reach the terminal as the characters they are, in the CLI and the TUI.

The hostile values are written into a real store (as an imported session would put them there) and shown through
the real `difflens` commands; the TUI's tables and notifications are driven in a headless app.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult

from store import sessions
from store.paths import home
from tests.support.engine_helpers import ROOT
from tui.render.plain_text import PlainConsole, plain, printable
from tui.widgets.plain_table import PlainTable

pytestmark = pytest.mark.reliability

CLI = [sys.executable, "-c", "from tui.cli import main; main()"]
MARKUP = ["[/x]", "[/]", "[bold]loud[/bold][/i]", "[link=https://evil.example]click[/link]", ":pile_of_poo:"]
ESCAPES = {"osc52-clipboard": "\x1b]52;c;ZXZpbA==\x07", "clear-screen": "\x1b[2J\x1b[H", "c1-csi": "\x9b2J",
           "bell-backspace": "\x07\x08\x08", "nel": "a\x85b", "rtl-override": "abc\u202edcba",
           "osc8-link": "\x1b]8;;https://evil.example\x1b\\x\x1b]8;;\x1b\\"}
# what a terminal would obey: ESC, the C1 controls, BEL, backspace, bidi overrides
OBEYED = ("\x1b", "\x9b", "\x9d", "\x85", "\x07", "\x08", "\u202e")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIFFLENS_SESSIONS_DIR": str(home() / "no-files"),
           "COLUMNS": "200"}
    return subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _hostile_session(text: str) -> sessions.Session:
    """A session whose every shown field holds `text` (its name a tag: names refuse slashes and controls)."""
    s = sessions.create("study [b]")
    action = sessions.begin_action(s.id, "adl.summary", {"run": "adl-0123456789", "note": text}, "call")
    sessions.finish_action(action, result={"run": "adl-0123456789", "base": f"base{text}", "ft": f"ft{text}"})
    sessions.add_note(s.id, f"note {text}", {"cell": text})
    return sessions.get(s.id)


@pytest.mark.parametrize("text", MARKUP + list(ESCAPES.values()), ids=MARKUP + list(ESCAPES))
def test_sessions_list_and_show_print_outside_text_as_text(text: str) -> None:
    session = _hostile_session(text)
    for args in (["sessions", "list"], ["sessions", "show", session.id]):
        proc = _cli(*args)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert not [c for c in OBEYED if c in proc.stdout + proc.stderr]
        assert "study [b]" in proc.stdout  # shown literally, not read as markup
        if text in MARKUP:
            assert f"base{text}" in proc.stdout


@pytest.mark.parametrize("text", MARKUP, ids=MARKUP)
def test_an_error_naming_outside_text_is_one_line_not_a_traceback(text: str) -> None:
    proc = _cli("sessions", "show", f"nope {text}")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:") and text in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text", list(ESCAPES.values()) + MARKUP, ids=list(ESCAPES) + MARKUP)
def test_the_cli_console_writes_no_escape_from_a_string_a_text_or_a_table_cell(text: str) -> None:
    buffer = io.StringIO()
    console = PlainConsole(file=buffer, width=120)
    table = Table("a", "b", title=text)
    table.add_row(text, Text(text, style="bold"))
    console.print(text, Text(text), table)
    shown = buffer.getvalue()
    assert not [c for c in OBEYED if c in shown]
    if text in MARKUP:
        assert text in shown


def test_printable_replaces_one_character_by_one_and_keeps_plain_text() -> None:
    for text in ESCAPES.values():
        assert len(printable(text)) == len(text)
    assert printable("tab\tand\nnewline, é, 漢字, [x]") == "tab\tand\nnewline, é, 漢字, [x]"
    styled = Text.assemble(("a\x1bb", "bold"), "c")
    assert plain(styled).plain == "a\ufffdbc" and plain(styled).spans == styled.spans


class _TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield PlainTable(id="t")


@pytest.mark.asyncio
@pytest.mark.parametrize("text", MARKUP + list(ESCAPES.values()), ids=MARKUP + list(ESCAPES))
async def test_the_tuis_tables_and_notifications_show_outside_text_as_text(text: str) -> None:
    from tui.app import DiffLensApp

    app = _TableApp()
    async with app.run_test() as pilot:
        table = app.query_one(PlainTable)
        table.add_columns("name", "pair")
        table.add_row(text, Text(text, style="bold"))
        await pilot.pause()
        cell = table.get_cell_at((0, 0))
        assert cell.plain == printable(text)
        table.render_line(1)  # a markup error would be raised here, as the table paints
    tui = DiffLensApp(client_factory=None)
    async with tui.run_test() as pilot:
        tui.notify(f"session {text!s} stopped recording", title=text)
        await pilot.pause()
        shown = [n.message for n in tui._notifications]
        assert shown and not [c for c in OBEYED if c in shown[-1]]
