"""`--ray [auto|ADDRESS]`: a board's base groups as Ray tasks, on every GPU (or CPU) of a Ray cluster.

Each task triages one base group in a private store on its worker and returns every result it made (ADL
runs, base passes, lens grids, steering samples, …) with the pairs' rows; the driver writes them into its
own store with `results.save` (the key is the content hash of the inputs, so the keys are those of a local
run) and streams each group's pairs as they land. Pairs the driver's store has finished are not sent. A
task whose worker dies is retried once by Ray, then its pairs are reported failed and the board goes on.
`ray` is imported here only, when a board is run with `--ray`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from engine.deadline import within_deadline
from engine.errors import JobCancelled, UserError
from engine.jobs import JobContext
from engine.protocol.redact import redact_logs
from engine.triage import state
from engine.triage.devices import GroupRunner, Workers, base_groups
from engine.triage.planned import Planned, needs_work
from store import results

CONNECT_TIMEOUT_S = 30.0   # ray.init against a cluster that accepts the connection but never answers
PROBE_TIMEOUT_S = 5.0      # the TCP connect that finds an address where nothing listens
RAY_FIX = "start one (`ray start --head`) or pass --ray HOST:6379 / ray://HOST:10001"
Exported = tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], float]],
                 dict[str, Any]]


def connect(address: str, ctx: JobContext) -> Any:
    """The `ray` module, connected: an existing `ray.init` in this process, else the cluster at `address`
    (`auto`: the one `ray start` made on this machine or the job's). A cluster that is not there fails within
    `CONNECT_TIMEOUT_S` naming the address, and a cancel is heard while Ray is still connecting."""
    try:
        import ray
    except ImportError as exc:
        raise UserError("--ray needs Ray, which is not installed", "pip install 'difflens[cluster]'") from exc
    if ray.is_initialized():
        return ray
    if address != "auto":
        _probe(address)
    # Ray puts the driver's working directory first on every worker's sys.path unless the job has a
    # working_dir: an empty one keeps the user's folders (an `engine/` of theirs) out of our tasks.
    runtime_env = {"working_dir": tempfile.mkdtemp(prefix="difflens-ray-job-")}
    timed_out = UserError(f"no Ray cluster answered at {address!r} within {CONNECT_TIMEOUT_S:.0f} s", RAY_FIX)
    try:
        within_deadline(lambda: ray.init(address=address, log_to_driver=False, runtime_env=runtime_env),
                        CONNECT_TIMEOUT_S, ctx, "ray-connect", timed_out)
    except UserError:
        _drop(runtime_env["working_dir"])
        raise
    except BaseException as error:
        _drop(runtime_env["working_dir"])
        if isinstance(error, JobCancelled):
            raise
        first = (str(error).splitlines() or [type(error).__name__])[0][:160]
        raise UserError(f"cannot reach a Ray cluster at {address!r}: {first}", RAY_FIX) from error
    return ray


def _drop(folder: str) -> None:
    """Remove the job's empty working_dir when the connection did not happen."""
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def _probe(address: str) -> None:
    """Fail at once, in one line, when nothing listens at a `HOST:PORT` or `ray://HOST:PORT` address."""
    where = address.removeprefix("ray://")
    host, sep, port = where.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--ray {address!r} is not auto, HOST:PORT or ray://HOST:PORT", RAY_FIX)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(f"no Ray cluster at {address!r}: {exc.strerror or exc}", RAY_FIX) from None


def on_ray(order: list[Planned], address: str, workers: Workers, ctx: JobContext,
           local: Callable[[Planned], dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Outcomes of every pair, each planned for the cluster's device (its key names it): finished ones (and
    unresolvable ones) from `local`, the rest from Ray tasks."""
    ray = connect(address, ctx)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(max_retries=1, retry_exceptions=False, num_gpus=gpus)(triage_in_private_store)
    placed = [workers.place(item, "cuda" if gpus else "cpu") for item in order]
    todo = [item for item in placed if needs_work(item)]
    yield from (local(item) for item in placed if item not in todo)
    pending = {task.remote(workers.run_group, *workers.share(group)): group for group in base_groups(todo)}
    done_pairs = len(order) - len(todo)
    try:
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            ctx.check_cancelled()
            for ref in finished:
                group = pending.pop(ref)
                done_pairs += len(group)
                ctx.progress(done_pairs, len(order), f"{group[-1].name} ({done_pairs}/{len(order)}, Ray)")
                try:
                    yield from import_group(ray.get(ref))
                except Exception as exc:  # the worker died twice, or the task could not run at all
                    yield from (workers.failed(p, exc) for p in group)
    except JobCancelled:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def triage_in_private_store(run_group: GroupRunner, planned: list[dict[str, Any]], llm: str | None,
                            reports: bool) -> Exported:
    """On the worker: triage the group in a fresh store; return the outcomes, every result, and the reports."""
    redact_logs()
    with tempfile.TemporaryDirectory(prefix="difflens-ray-") as home:
        previous = os.environ.get("DIFFLENS_HOME")
        os.environ["DIFFLENS_HOME"] = home
        try:
            outcomes = run_group(planned, llm, reports)
            made = [(r["kind"], r["inputs"], stored.tensors, r["meta"], r["seconds"])
                    for r in results.list_results() if (stored := results.load(r["key"])) is not None]
            stored_reports = {o["key"]: (state.finished(o["key"]) or {}).get("report") for o in outcomes}
        finally:
            if previous is None:
                os.environ.pop("DIFFLENS_HOME", None)
            else:
                os.environ["DIFFLENS_HOME"] = previous
    return outcomes, made, stored_reports


def import_group(exported: Exported) -> Iterator[dict[str, Any]]:
    """Write a task's results and pair rows into this (the driver's) store; yield its outcomes."""
    outcomes, made, reports = exported
    for kind, inputs, tensors, meta, seconds in made:
        results.save(kind, inputs, tensors, meta, seconds=seconds)
    for outcome in outcomes:
        state.save_pair(outcome["key"], outcome, reports.get(outcome["key"]), outcome.get("seconds", 0.0))
        yield outcome
