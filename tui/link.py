"""The workbench's one door to the engine: it owns the client and turns every failure into a message.

Workers call `link.call` / `link.job` with a method and its params and get the method's typed result or None;
they never see an exception. A lost engine is reported once (`EngineLost`) and `connect()` again is the reconnect.
Running jobs are tracked so the pair bar can show the newest one's progress and the cancel key can stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from textual.message import Message
from textual.worker import NoActiveWorker, Worker, get_current_worker

from engine.protocol.methods import Method
from engine.protocol.params import Params
from engine.protocol.results import Result
from tui.client import ClientFactory, EngineClient, EngineUnavailable, JobCancelledError
from tui.messages import EngineConnected, EngineLost, JobChanged, OpFailed
from tui.state import JobView

EventSink = Callable[[dict[str, Any]], object]  # what it returns is ignored
P = TypeVar("P", bound=Params)
R = TypeVar("R", bound=Result)


@dataclass
class _Job:
    view: JobView
    worker: Worker[Any] | None
    job_id: str | None = None


def error_text(exc: BaseException) -> str:
    """One line for a notification: the error's own message, else its type."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class EngineLink:
    """Owns the engine client for the app; posts `EngineConnected`, `EngineLost`, `OpFailed`, `JobChanged`."""

    def __init__(self, factory: ClientFactory, post: Callable[[Message], Any]) -> None:
        self._factory = factory
        self._post = post
        self._ready = asyncio.Event()
        self._jobs: dict[int, _Job] = {}
        self._next_key = 0
        self.client: EngineClient | None = None
        self.lost = False

    async def connect(self) -> bool:
        """(Re)connect: close any old client, make a new one; False (and `EngineLost`) when that fails."""
        self._ready.clear()
        old, self.client = self.client, None
        if old is not None:
            with contextlib.suppress(Exception):  # the old transport is already gone; nothing to tell
                await old.close()
        try:
            self.client = await self._factory()
        except Exception as exc:
            self.lost = True
            self._post(EngineLost(error_text(exc)))
            return False
        finally:
            self._ready.set()
        self.lost = False
        self._post(EngineConnected(self.client.description))
        return True

    async def _client(self) -> EngineClient | None:
        await self._ready.wait()
        return None if self.lost else self.client

    def _failed(self, method: str, exc: BaseException, quiet: bool = False) -> None:
        if isinstance(exc, EngineUnavailable):
            if not self.lost:
                self.lost = True
                self._post(EngineLost(error_text(exc)))
        elif not quiet and not isinstance(exc, JobCancelledError):  # a cancel was asked for and announced
            self._post(OpFailed(method, error_text(exc)))

    async def call(self, method: Method[P, R], params: P, *, quiet: bool = False) -> R | None:
        """A short op's result, or None after reporting the failure (`quiet`: report only a lost engine)."""
        client = await self._client()
        if client is None:
            return None
        try:
            return await client.ask(method, params)
        except Exception as exc:
            self._failed(method.name, exc, quiet)
            return None

    async def job(self, label: str, method: Method[P, R], params: P,
                  on_partial: EventSink | None = None,
                  on_progress: EventSink | None = None) -> R | None:
        """Run a long op, publishing its progress (also to `on_progress`, for the pane that waits on it); partial
        results go to `on_partial`."""
        client = await self._client()
        if client is None:
            return None
        key = self._next_key
        self._next_key += 1
        try:
            worker: Worker[Any] | None = get_current_worker()
        except NoActiveWorker:
            worker = None
        self._jobs[key] = _Job(view=JobView(label=label), worker=worker)
        self._publish()

        def on_event(event: dict[str, Any]) -> None:
            job = self._jobs.get(key)
            if job is None:
                return
            if event.get("job"):
                job.job_id = str(event["job"])
            if event.get("type") == "progress":
                job.view = JobView(label=label, done=int(event.get("done") or 0), total=event.get("total"),
                                   message=str(event.get("message") or ""), eta_s=event.get("eta_s"))
                self._publish()
                if on_progress is not None:
                    on_progress(event)
            elif event.get("type") == "partial" and on_partial is not None:
                on_partial(event)

        try:
            return await client.ask_job(method, params, on_event)
        except Exception as exc:
            self._failed(method.name, exc)
            return None
        finally:
            self._jobs.pop(key, None)
            self._publish()

    def _publish(self) -> None:
        newest = self._jobs[max(self._jobs)].view if self._jobs else None
        if newest is not None and len(self._jobs) > 1:
            newest = JobView(**{**newest.__dict__, "running": len(self._jobs)})
        self._post(JobChanged(newest))

    async def cancel_newest(self) -> str | None:
        """Stop the newest job; its label, or None when none runs.

        Cancelling the worker cancels the awaiting `run_job`, which cancels the job in the engine; a job
        awaited outside a worker is cancelled by id.
        """
        if not self._jobs:
            return None
        job = self._jobs[max(self._jobs)]
        if job.worker is not None:
            job.worker.cancel()
        elif job.job_id is not None and self.client is not None and not self.lost:
            try:
                await self.client.cancel(job.job_id)
            except Exception as exc:
                self._failed("cancel", exc)
        return job.view.label

    async def close(self) -> None:
        """Detach from the engine (a background engine keeps running; a private child stops)."""
        if self.client is not None:
            with contextlib.suppress(Exception):  # closing a dead transport: nothing left to release
                await self.client.close()
