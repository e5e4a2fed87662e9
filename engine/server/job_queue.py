"""Long ops as jobs: a queue served by worker threads, cancel through `JobContext.cancel_event`, and every
event broadcast to the clients that follow the job (a client leaving never stops a job).

A long job never starves a cached one: while every worker is busy, a newly queued analysis job is also tried
on a side thread where models are off limits (`engine.jobs.store_only`); if it can answer from the store, it
is done at once, otherwise it waits its turn in the queue as before."""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.errors import JobCancelled
from engine.jobs import JobContext, store_only
from engine.ops import Op
from engine.protocol import wire
from engine.server.failures import checked_result, error_for

log = logging.getLogger("difflens.engine")

MAX_PARTIALS_KEPT = 1000     # replayed to clients that subscribe late
MAX_FINISHED_KEPT = 256      # finished jobs kept for job.result / job.list
FROM_STORE = ("adl.", "readout.", "steer.", "lens.")  # jobs worth trying from the store (no outside side effects)


class Subscriber(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


@dataclass(eq=False)
class Job:
    id: str
    op: Op
    params: dict[str, Any]
    client: str
    ctx: JobContext
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    progress: dict[str, Any] | None = None
    partials: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    subscribers: set[Subscriber] = field(default_factory=set)
    on_done: Callable[[dict[str, Any]], None] | None = None  # given the result once the job is done (answer memo)

    def summary(self, *, full: bool = False) -> dict[str, Any]:
        """What `job.list` shows; `full` adds the params, partials and the result or error."""
        out: dict[str, Any] = {"job": self.id, "method": self.op.name, "state": self.state,
                               "client": self.client, "created": self.created, "started": self.started,
                               "finished": self.finished, "progress": self.progress}
        if full:
            out.update(params=self.params, partials=list(self.partials), result=self.result, error=self.error)
        return out


class JobManager:
    """Owns every job of this engine; thread-safe."""

    def __init__(self, workers: int = 1) -> None:
        self._lock = threading.RLock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._watch_all: set[Subscriber] = set()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._unfinished = 0  # started and not yet taken off the queue and finished by a worker
        self._side = ThreadPoolExecutor(max_workers=2, thread_name_prefix="job-from-store")
        self._workers = [threading.Thread(target=self._work, name=f"job-worker-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for worker in self._workers:
            worker.start()

    # ---- submitting and following ----

    def create(self, op: Op, params: dict[str, Any], owner: Subscriber, client: str,
               on_done: Callable[[dict[str, Any]], None] | None = None) -> Job:
        """A queued job followed by `owner`; call `start` once its id has been sent to the owner."""
        job = Job(id=f"j{next(self._ids)}", op=op, params=params, client=client, ctx=JobContext(), on_done=on_done)
        job.ctx.emit = lambda event: self._emit(job, event)
        job.subscribers.add(owner)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        return job

    def finish_now(self, job: Job) -> None:
        """Run a created job's op here and now instead of queueing it: for an op that only gives back a kept
        answer (`engine.answers`), which is done at once even while every worker is busy."""
        value = checked_result(job.op.fn(job.params, job.ctx))
        with self._lock:
            job.state, job.started = "running", time.time()
            self._finish(job, "done", result=value)

    def start(self, job: Job) -> None:
        with self._lock:
            self._unfinished += 1
            must_wait = self._unfinished > len(self._workers)
        self._queue.put(job)
        if must_wait and job.op.name.startswith(FROM_STORE):
            with contextlib.suppress(RuntimeError):  # stopping: the queue has it
                self._side.submit(self._answer_from_store, job)

    def _answer_from_store(self, job: Job) -> None:
        """Run `job` with models off limits; if it finishes, that is its answer (its events are replayed);
        if it needs a model or fails, nothing happened and the queued run answers in turn."""
        events: list[dict[str, Any]] = []
        try:
            with store_only():
                value = checked_result(job.op.fn(job.params, JobContext(emit=events.append,
                                                                        cancel_event=job.ctx.cancel_event)))
        except BaseException:  # needs the models, or fails: the queued run does it and reports
            return
        with self._lock:
            if job.state != "queued":
                return
            job.state, job.started = "running", time.time()
        for event in events:
            self._emit(job, event)
        with self._lock:
            self._finish(job, "done", result=value)
        _done(job, value)

    def get(self, job_id: str) -> Job:
        with self._lock:
            if job_id not in self._jobs:
                raise wire.ProtocolError(wire.JOB_NOT_FOUND, f"no job {job_id!r}",
                                             {"problem": f"no job {job_id!r}", "fix": "see job.list"})
            return self._jobs[job_id]

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [job.summary() for job in self._jobs.values()]

    def subscribe(self, sub: Subscriber, job_id: str | None) -> dict[str, Any]:
        """Follow one job (its full state so far is returned) or, with no id, every job now and later."""
        with self._lock:
            if job_id is None:
                self._watch_all.add(sub)
                return {"jobs": [job.summary() for job in self._jobs.values()]}
            job = self.get(job_id)
            job.subscribers.add(sub)
            return job.summary(full=True)

    def detach(self, sub: Subscriber) -> None:
        """A client left: stop sending it events; its jobs run on."""
        with self._lock:
            self._watch_all.discard(sub)
            for job in self._jobs.values():
                job.subscribers.discard(sub)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask a job to stop at its next batch; a queued job ends at once."""
        with self._lock:
            job = self.get(job_id)
            job.ctx.cancel_event.set()
            if job.state == "queued":
                self._finish(job, "cancelled", error=error_for(JobCancelled()))
            return {"job": job.id, "state": job.state}

    def cancel_all(self) -> None:
        with self._lock:
            ids = [job.id for job in self._jobs.values() if job.state not in wire.FINISHED_STATES]
        for job_id in ids:
            self.cancel(job_id)

    def active(self) -> int:
        with self._lock:
            return sum(job.state not in wire.FINISHED_STATES for job in self._jobs.values())

    # ---- running ----

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            with self._lock:
                if job.state != "queued":
                    self._unfinished -= 1
                    continue
                job.state, job.started = "running", time.time()
            self._broadcast(job, wire.JOB_PROGRESS,
                            {"type": "progress", "done": 0, "total": None, "message": "started"})
            try:
                value = checked_result(job.op.fn(job.params, job.ctx))
            except BaseException as exc:  # every failure becomes a job.failed notification
                error = error_for(exc)
                state = "cancelled" if error["code"] == wire.JOB_CANCELLED else "failed"
                with self._lock:
                    self._unfinished -= 1
                    self._finish(job, state, error=error)
            else:
                with self._lock:
                    self._unfinished -= 1
                    self._finish(job, "done", result=value)
                _done(job, value)

    def _finish(self, job: Job, state: str, *, result: dict[str, Any] | None = None,
                error: dict[str, Any] | None = None) -> None:
        job.state, job.finished, job.result, job.error = state, time.time(), result, error
        log.info("job %s (%s) %s", job.id, job.op.name, state)
        if state == "done":
            self._broadcast(job, wire.JOB_DONE, {"result": result})
        else:
            self._broadcast(job, wire.JOB_FAILED, {"error": error})

    def _emit(self, job: Job, event: dict[str, Any]) -> None:
        kind = event.get("type")
        with self._lock:
            if kind == "partial":
                job.partials.append(event)
                del job.partials[:-MAX_PARTIALS_KEPT]
            else:
                job.progress = event
            self._broadcast(job, wire.JOB_PARTIAL if kind == "partial" else wire.JOB_PROGRESS, event)

    def _broadcast(self, job: Job, method: str, params: dict[str, Any]) -> None:
        message = wire.notification(method, {"job": job.id, **params})
        with self._lock:
            targets = job.subscribers | self._watch_all
        for sub in targets:
            sub.send(message)

    def _forget_old(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.state in wire.FINISHED_STATES]
        for job_id in finished[: max(0, len(finished) - MAX_FINISHED_KEPT)]:
            del self._jobs[job_id]

    def stop(self) -> None:
        self._side.shutdown(wait=False, cancel_futures=True)
        self.cancel_all()
        for _ in self._workers:
            self._queue.put(None)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))


def _done(job: Job, value: dict[str, Any]) -> None:
    """Hand a done job's result to its `on_done` (a failure there is logged: the job's answer was given)."""
    if job.on_done is None:
        return
    try:
        job.on_done(value)
    except Exception:
        log.exception("after job %s (%s)", job.id, job.op.name)
