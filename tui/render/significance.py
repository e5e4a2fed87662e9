"""The headline of a report as every renderer shows it: the hypothesis only when the evidence clears its null.

The engine writes the verdict and its sentence (the report's `significance`, engine/results/significance.py);
this is the one place the terminal report, the HTML page, the board and the workbench read them from.
"""

from __future__ import annotations

from engine.protocol.report_results import TriageReport
from engine.protocol.results import Significance

UNTESTED = "not tested against a null (a report from before significance, or --null 0)"


def headline_parts(report: TriageReport, with_hypothesis: bool = True) -> tuple[str, str, bool]:
    """(text, title, readable) of a report's headline; `readable` False only when the null says noise
    (`with_hypothesis` False: the verdict alone, as a board page shows it beside the row's own hypothesis)."""
    sig = report.significance or Significance()
    hyp = report.hypothesis if with_hypothesis else None
    if sig.readable is False:
        return sig.statement, sig.verdict or "no readable trace", False
    statement = sig.statement or UNTESTED
    if hyp is not None:
        return f"{hyp.text}\n{statement}", hyp.label or "hypothesis", True
    return statement, "significance", True
