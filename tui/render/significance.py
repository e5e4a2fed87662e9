"""The headline of a report as every renderer shows it: the hypothesis only when the evidence clears its null.

The engine writes the verdict and its sentence (`report["significance"]`, engine/results/significance.py);
this is the one place the terminal report, the HTML page, the board and the workbench read them from.
"""

from __future__ import annotations

from typing import Any

UNTESTED = "not tested against a null (a report from before significance, or --null 0)"


def headline_parts(report: dict[str, Any]) -> tuple[str, str, bool]:
    """(text, title, readable) of a report's headline; `readable` False only when the null says noise."""
    sig = report.get("significance") or {}
    hyp = report.get("hypothesis") or {}
    if sig.get("readable") is False:
        return str(sig["statement"]), str(sig.get("verdict") or "no readable trace"), False
    statement = str(sig.get("statement") or UNTESTED)
    if hyp:
        return f"{hyp['summary']}\n{statement}", str(hyp.get("label") or "hypothesis"), True
    return statement, "significance", True


def short_verdict(sig: dict[str, Any] | None) -> str:
    """A significance in a few words: `z 12.3` for a readable trace, else `no readable trace (z 0.6)`."""
    sig = sig or {}
    if sig.get("readable") is None:
        return "untested"
    if sig.get("z") is None:
        return str(sig.get("verdict"))
    return f"z {sig['z']:.1f}" if sig["readable"] else f"{sig.get('verdict')} (z {sig['z']:.1f})"


def board_verdict(pair: dict[str, Any]) -> str:
    """A board row's significance (kept in its trace)."""
    return short_verdict((pair.get("trace") or {}).get("significance"))
