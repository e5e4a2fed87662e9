"""Benchmark texts: web-like documents of several sentences, built from the shipped generic text.

Each text joins six generic lines chosen by a stride, so n texts are distinct for any n up to tens of
thousands, every text is longer than the 64 tokens the notebook baseline reads, and nothing needs a network.
"""

from __future__ import annotations

from pathlib import Path

from engine.corpus.sources import GENERIC_TEXT

LINES_PER_TEXT = 6


def bench_texts(n: int) -> list[str]:
    """`n` distinct documents (deterministic)."""
    lines = [line.strip() for line in GENERIC_TEXT.read_text(encoding="utf-8").splitlines() if line.strip()]
    count = len(lines)
    return [" ".join(lines[(i + j * (1 + i // count)) % count] for j in range(LINES_PER_TEXT)) + f" ({i})"
            for i in range(n)]


def write_corpus(path: Path, n: int) -> Path:
    """A one-text-per-line corpus file of `n` documents, for `--corpus FILE`."""
    path.write_text("\n".join(bench_texts(n)) + "\n", encoding="utf-8")
    return path
