"""Clocks and memory gauges shared by the benchmark steps.

`interleaved` times several methods round by round with the order rotated each round, so a slow spell on
a shared machine lands on every method alike. `Gauge` records, per label, the peak memory while that label
ran: RSS sampled by a thread on CPU, `torch.cuda.max_memory_allocated` on a GPU.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil

MB = 2**20


def _cuda() -> Any:
    """torch.cuda when a GPU is in use, else None (torch is imported only if already loaded)."""
    import sys

    torch = sys.modules.get("torch")
    return torch.cuda if torch is not None and torch.cuda.is_available() else None


def sync() -> None:
    """Wait for queued GPU work so a clock reads what the step cost."""
    if (cuda := _cuda()) is not None:
        cuda.synchronize()


def clock(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of `fn()`, GPU work included."""
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def interleaved(rounds: list[dict[str, Callable[[], Any]]], gauge: Gauge | None = None) -> dict[str, float]:
    """Total seconds per method over `rounds`; round i runs its methods starting at offset i."""
    totals: dict[str, float] = {}
    for index, methods in enumerate(rounds):
        names = list(methods)
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            with gauge.measure(name) if gauge is not None else contextlib.nullcontext():
                seconds, _ = clock(methods[name])
            totals[name] = totals.get(name, 0.0) + seconds
    return totals


def max_rss_mb() -> float:
    """This process's peak RSS so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Gauge:
    """Peak memory (MB) per label: RSS sampled every `every_s` on CPU, the allocator's peak on CUDA."""

    def __init__(self, every_s: float = 0.01) -> None:
        self.peaks: dict[str, float] = {}
        self._label: str | None = None
        self._current = 0.0
        self._every = every_s
        self._process = psutil.Process(os.getpid())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self._every):
            self._current = max(self._current, self._process.memory_info().rss / MB)

    @contextlib.contextmanager
    def measure(self, label: str) -> Iterator[None]:
        """Record the peak while the block runs, kept as the max over every block with this label."""
        cuda = _cuda()
        if cuda is not None:
            cuda.synchronize()
            cuda.reset_peak_memory_stats()
        else:
            self._current = self._process.memory_info().rss / MB
            if self._thread is None:
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            if cuda is not None:
                cuda.synchronize()
                peak = cuda.max_memory_allocated() / MB
            else:
                peak = max(self._current, self._process.memory_info().rss / MB)
            self.peaks[label] = round(max(self.peaks.get(label, 0.0), peak), 1)

    def close(self) -> None:
        self._stop.set()
