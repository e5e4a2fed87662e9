"""`--devices cuda:0,cuda:1,…`: a board's pairs spread over the devices of one machine, without Ray.

One worker process per device (its own model cache, no tensors shared between threads), fed whole base
groups so that each base loads once per device; groups go to the lane with the fewest pairs so far, in
board order, so a re-run gives every pair the same device (and the same key). Workers write to the same
store as a serial run would (SQLite in WAL mode, atomic files).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from engine.errors import JobCancelled, UserError
from engine.jobs import JobContext
from engine.models.device import resolve_placement
from engine.triage.planned import Planned

# a worker's share: (the planned pairs of a group as JSON, the board's LLM spec, whether to keep reports) → outcomes
GroupRunner = Callable[[list[dict[str, Any]], str | None, bool], list[dict[str, Any]]]


@dataclass(frozen=True)
class Workers:
    """How a board's groups run elsewhere: `run_group` in the worker with the board's `llm` spec and `reports`;
    `failed` reports a pair whose worker died; `place` re-plans a pair for the device its worker runs it on."""

    run_group: GroupRunner
    llm: str | None
    reports: bool
    failed: Callable[[Planned, Exception], dict[str, Any]]
    place: Callable[[Planned, str], Planned]

    def share(self, group: list[Planned]) -> tuple[list[dict[str, Any]], str | None, bool]:
        """A group's arguments for `run_group`: what crosses to the worker process."""
        return [item.to_json() for item in group], self.llm, self.reports


def parse_devices(text: str | None) -> list[str]:
    """`cuda:0,cuda:1` → the devices (each checked as `--device` is); empty for none."""
    devices = [part.strip() for part in (text or "").split(",") if part.strip()]
    for device in devices:
        if device == "auto":
            raise UserError("--devices lists devices, not auto", "pass e.g. --devices cuda:0,cuda:1")
        resolve_placement(device)
    return devices


def base_groups(order: list[Planned]) -> list[list[Planned]]:
    """Consecutive pairs of the plan that load the same base (unresolvable pairs each alone)."""
    groups: list[list[Planned]] = []
    for item in order:
        same = groups and item.loads and groups[-1][0].loads and groups[-1][0].loads[0] == item.loads[0]
        if same:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def assign(groups: list[list[Planned]], lanes: int) -> list[list[list[Planned]]]:
    """Groups to lanes, each to the lane with the fewest pairs so far (ties: the first lane)."""
    out: list[list[list[Planned]]] = [[] for _ in range(lanes)]
    for group in groups:
        min(out, key=lambda lane: sum(len(g) for g in lane)).append(group)
    return out


def on_devices(order: list[Planned], devices: list[str], workers: Workers,
               ctx: JobContext) -> Iterator[dict[str, Any]]:
    """Outcomes of every pair, each group's as soon as its device finishes it (`run_group` runs in the worker;
    a group whose worker died is reported through `failed`, pair by pair, and the board goes on)."""
    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding models and threads
    executors = [ProcessPoolExecutor(max_workers=1, mp_context=spawn) for _ in devices]
    pending: dict[Future[list[dict[str, Any]]], list[Planned]] = {}
    try:
        for executor, device, lane in zip(executors, devices, assign(base_groups(order), len(devices)), strict=True):
            for group in lane:
                placed = [workers.place(item, device) for item in group]
                pending[executor.submit(workers.run_group, *workers.share(placed))] = placed
        done_pairs = 0
        while pending:
            finished, _ = wait(list(pending), timeout=1.0, return_when=FIRST_COMPLETED)
            ctx.check_cancelled()
            for future in finished:
                group = pending.pop(future)
                done_pairs += len(group)
                ctx.progress(done_pairs, len(order), f"{group[-1].name} ({done_pairs}/{len(order)}, "
                                                     f"{len(devices)} devices)")
                try:
                    outcomes = future.result()
                except Exception as exc:  # the worker process died (out of memory, killed)
                    outcomes = [workers.failed(p, exc) for p in group]
                yield from outcomes
    except JobCancelled:
        for executor in executors:
            executor.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        for executor in executors:
            executor.shutdown(wait=True, cancel_futures=True)
