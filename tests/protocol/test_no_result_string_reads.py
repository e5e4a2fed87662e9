"""No engine result is read by string key in tui/: readers take the typed result and read its attributes.

An AST scan of tui/ finds every `x["key"]` and `x.get("key")` with a literal key. What is left is not an engine
result: the JSON-RPC envelope and its notifications, a job's progress and partial events, the agent's streamed
events, session files' own records and UI state, a form's values, and the CLI's own params. Each file that reads
such JSON is listed below with the keys it reads and why; a new key, or a new file, fails this test until it is
either typed (a field on the result dataclass in engine/protocol/) or added here with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

TUI = Path(__file__).resolve().parents[2] / "tui"

ALLOWED: dict[str, set[str]] = {
    # the JSON-RPC envelope: requests, answers, errors, and the server's method table (`long`: runs as a job)
    "client/rpc.py": {"error", "fix", "id", "job", "method", "methods", "name", "params", "partials", "problem",
                      "result", "state"},
    "client/errors.py": {"code", "data", "fix", "message", "problem"},
    "client/connect.py": {"long"},
    # a job's progress and partial notifications (engine/protocol/wire.py)
    "link.py": {"done", "eta_s", "job", "message", "total", "type"},
    "progress_text.py": {"done", "eta_s", "message", "total"},
    "cli/output.py": {"done", "message", "total", "type"},
    "sessions/client.py": {"type", "live"},  # a partial event's type; `live` the instance's own cached attribute
    # the agent's streamed events (engine/agent/), and a steering job's partial rows (line/row, column, prompt, text)
    "cli/agent.py": {"arguments", "event", "hypothesis", "id", "message", "name", "status", "type"},
    "state.py": {"arguments", "confidence", "content", "description", "evidence", "hypothesis", "id", "message",
                 "name", "result", "status", "type", "column", "line", "prompt", "row", "text",
                 # `AdlSummary.metrics` is keyed by metric name (the heatmap cycles over its keys): a lookup by
                 # value, like `steering[pos]`, not a field
                 "diff_norm", "rel_norm"},
    "screens/workbench.py": {"event", "alpha", "prompt"},  # an agent event; the α and prompt forms' values
    "screens/session_actions.py": {"name", "note"},  # form values
    # session files' and the store's own records (store/sessions.py, store/bundle*.py) and the UI state they keep;
    # a recorded action's `result` is handed whole to the method's result type
    "screens/session.py": {"event", "params", "patch_follows", "show_agent", "tokens"},
    "screens/start.py": {"actions", "base", "error", "ft", "key", "name", "notes", "updated", "where"},
    "cli/sessions.py": {"actions", "base", "cell", "error", "ft", "id", "method", "name", "notes", "params", "refs",
                        "seconds", "seq", "t", "text", "updated", "where"},
    "cli/record_demo.py": {"base", "ft", "method"},  # DEMO_PAIR (a constant) and recorded actions' method
    "sessions/files.py": {"id"},
    "sessions/replay.py": {"calls", "description", "error", "events", "method", "params", "result"},
    "sessions/rerun.py": {"kind", "meta", "method", "params", "request", "result"},
    "sessions/source.py": {"base", "cell", "ft", "id", "method", "name", "params", "result", "run", "seq", "status",
                           "ui"},
    "sessions/view.py": {"agent", "alpha", "alpha_from", "calibrated", "heat", "include_pos0", "layer", "method",
                         "metric", "note", "params", "pos", "prompts", "result", "row", "run", "scale_index",
                         "selected", "source", "status", "steer", "tokens"},
}


def string_reads(tree: ast.AST) -> set[str]:
    """Keys read with a string literal: `x["key"]` (not an assignment to it) and `x.get("key", ...)`."""
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) \
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            keys.add(node.slice.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            keys.add(node.args[0].value)
    return keys


def reads_by_file() -> dict[str, set[str]]:
    found = {}
    for path in sorted(TUI.rglob("*.py")):
        if keys := string_reads(ast.parse(path.read_text(), str(path))):
            found[path.relative_to(TUI).as_posix()] = keys
    return found


def test_no_engine_result_is_read_by_string_key_in_tui() -> None:
    unexpected = {f"tui/{name}: {sorted(keys - ALLOWED.get(name, set()))}"
                  for name, keys in reads_by_file().items() if keys - ALLOWED.get(name, set())}
    assert not unexpected, ("string-key reads in tui/ (read the typed result's attribute instead, or say here "
                            f"why it is not an engine result): {sorted(unexpected)}")


def test_the_allow_list_names_only_reads_that_are_there() -> None:
    found = reads_by_file()
    stale = {f"tui/{name}: {sorted(keys - found.get(name, set()))}" for name, keys in ALLOWED.items()
             if keys - found.get(name, set())}
    assert not stale, f"allowed reads no longer in tui/ (drop them from ALLOWED): {sorted(stale)}"


def test_the_scan_finds_a_result_read_by_key() -> None:
    code = 'def view(report):\n    return report["layers"], report.get("steering"), {"x": 1}\nreport["y"] = 2\n'
    assert string_reads(ast.parse(code)) == {"layers", "steering"}
