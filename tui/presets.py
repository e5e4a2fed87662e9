"""The workbench's own requests, written as params of the methods they call (each default lives in
engine/protocol/methods.py, once): a screen fills in the run, the cell or the texts and sends the rest as it is.
Steering is the triage report's (`REPORT_STEERING`), so a triaged run's samples answer the workbench's `r` from
the cache, and a session re-run from the CLI asks the same."""

from __future__ import annotations

from engine.protocol import methods

STEER = methods.REPORT_STEERING
"""`r` at the cursor's cell, and a principal component in the PCA view (at the cell's calibrated strength)."""

GENERIC = "generic:"
"""The corpus a lens view reads until the user types another: the shipped generic text."""

MINE = methods.LensMine(corpus=GENERIC, topics=True)
"""`M`: diff mining over generic text, with topics."""

PCA = methods.LensPca(corpus=GENERIC)
"""`P`: the PCA of per-text differences over generic text."""

KL_CORPUS = methods.LensKl()
"""`d` with `@SOURCE`: the top snippets of that many texts of a corpus."""
