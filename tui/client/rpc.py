"""`EngineClient` over any `Transport`: request ids, one reader task, job event routing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any

from engine.protocol import wire
from tui.client.base import EngineClient, EventCallback, NotificationCallback
from tui.client.errors import EngineError, EngineUnavailable, UserFacingError, error_from
from tui.client.transport import Transport

log = logging.getLogger("difflens.client")

ResultHook = Callable[[dict[str, Any]], None]


class RpcClient(EngineClient):
    """JSON-RPC 2.0 client. Job events are queued per job from the moment the engine names the job (in
    the reader, before any of its notifications can be read), so none is ever missed."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.description = transport.description
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[dict[str, Any]], ResultHook | None]] = {}
        self._jobs: dict[str, asyncio.Queue[tuple[str, dict[str, Any]] | None]] = {}
        self._callbacks: list[NotificationCallback] = []
        self._methods: dict[str, dict[str, Any]] | None = None
        self._closed: EngineUnavailable | None = None
        self._reader = asyncio.create_task(self._read())

    # ---- the door ----

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._request(method, params)

    async def run_job(self, method: str, params: dict[str, Any] | None = None,
                      on_event: EventCallback | None = None) -> dict[str, Any]:
        answer = await self._request(method, params, hook=self._track)
        if not isinstance(answer.get("job"), str):
            return answer  # the method was a short op: its answer is the result
        return await self._follow(answer["job"], on_event)

    async def submit(self, method: str, params: dict[str, Any] | None = None) -> str:
        answer = await self._request(method, params)
        if not isinstance(answer.get("job"), str):
            raise EngineError(f"{method} is not a long op; use call()", wire.INVALID_REQUEST)
        return str(answer["job"])

    async def cancel(self, job_id: str) -> None:
        await self._request(wire.JOB_CANCEL, {"job": job_id})

    def on_notification(self, callback: NotificationCallback) -> None:
        self._callbacks.append(callback)

    async def close(self) -> None:
        self._fail_all(EngineUnavailable(f"connection to {self.description} closed"))
        await self.transport.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    # ---- more than the door ----

    async def follow(self, job_id: str, on_event: EventCallback | None = None) -> dict[str, Any]:
        """Attach to a job (perhaps started by another client): replay its partials, stream its events,
        return its result (or raise its error)."""
        self._jobs.setdefault(job_id, asyncio.Queue())  # before asking: events may overtake the answer
        try:
            state = await self._request(wire.JOB_SUBSCRIBE, {"job": job_id})
        except BaseException:
            self._jobs.pop(job_id, None)
            raise
        if state["state"] in wire.FINISHED_STATES:
            self._jobs.pop(job_id, None)
            if state["state"] == "done":
                result: dict[str, Any] = state["result"]
                return result
            raise error_from(state["error"])
        if on_event is not None:
            for event in state.get("partials", []):
                on_event({"job": job_id, **event})
        return await self._follow(job_id, on_event)

    async def methods(self) -> dict[str, dict[str, Any]]:
        """The engine's methods by name (`long`, `doc`), asked once per connection."""
        if self._methods is None:
            listed = await self._request(wire.ENGINE_METHODS)
            self._methods = {m["name"]: m for m in listed["methods"]}
        return self._methods

    # ---- internals ----

    async def _request(self, method: str, params: dict[str, Any] | None = None,
                       hook: ResultHook | None = None) -> dict[str, Any]:
        if self._closed is not None:
            raise self._closed
        id_ = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[id_] = (future, hook)
        try:
            line = json.dumps(wire.request(id_, method, params), ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            self._pending.pop(id_, None)
            raise EngineError(f"params for {method} are not JSON: {exc}", wire.INVALID_PARAMS) from None
        if len(line) > wire.MAX_MESSAGE_BYTES // 4 and len(line.encode("utf-8")) > wire.MAX_MESSAGE_BYTES:
            self._pending.pop(id_, None)
            data = wire.too_large_data(wire.MAX_MESSAGE_BYTES)
            raise UserFacingError(f"the {method} request is a {data['problem']}", data["fix"],
                                  code=wire.MESSAGE_TOO_LARGE)
        try:
            await self.transport.send(line)
            return await future
        finally:
            self._pending.pop(id_, None)

    def _track(self, result: dict[str, Any]) -> None:
        job_id = result.get("job")
        if isinstance(job_id, str) and result.get("state") not in wire.FINISHED_STATES:
            self._jobs.setdefault(job_id, asyncio.Queue())

    async def _follow(self, job_id: str, on_event: EventCallback | None) -> dict[str, Any]:
        events = self._jobs.setdefault(job_id, asyncio.Queue())
        try:
            while True:
                item = await events.get()
                if item is None:
                    raise self._closed or EngineUnavailable(f"connection to {self.description} closed")
                method, params = item
                if method == wire.JOB_DONE:
                    return params.get("result") or {}
                if method == wire.JOB_FAILED:
                    raise error_from(params.get("error"))
                if on_event is not None:
                    on_event(params)
        except asyncio.CancelledError:
            if self._closed is None:
                with contextlib.suppress(EngineError):
                    await asyncio.shield(self.cancel(job_id))
            raise
        finally:
            self._jobs.pop(job_id, None)

    async def _read(self) -> None:
        try:
            while (line := await self.transport.receive()) is not None:
                if line.strip():
                    self._dispatch(line)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken transport ends the connection, not the app
            log.warning("reading from %s failed: %s", self.description, exc)
        why = self.transport.why_closed()
        self._fail_all(EngineUnavailable(f"the engine at {self.description} closed the connection"
                                         + (f" ({why})" if why else "")))

    def _dispatch(self, line: str) -> None:
        try:
            message = wire.decode(line)
        except wire.ProtocolError as exc:
            log.warning("unreadable message from %s: %s", self.description, exc.message)
            return
        if "method" in message:
            self._notify(str(message["method"]), message.get("params") or {})
            return
        id_ = message.get("id")
        future, hook = self._pending.get(id_, (None, None)) if isinstance(id_, int) else (None, None)
        if future is None:
            if "error" in message and id_ is None:
                self._fail_unnamed(error_from(message["error"]))
            elif "error" in message:
                log.warning("engine error for no request: %s", message["error"])
            return
        if future.done():
            return
        if "error" in message:
            future.set_exception(error_from(message["error"]))
            return
        value = message.get("result")
        value = value if isinstance(value, dict) else {"value": value}
        if hook is not None:
            hook(value)
        future.set_result(value)

    def _notify(self, method: str, params: dict[str, Any]) -> None:
        job_id = params.get("job")
        if isinstance(job_id, str) and job_id in self._jobs:
            self._jobs[job_id].put_nowait((method, params))
        for callback in list(self._callbacks):
            try:
                callback(method, params)
            except Exception:  # a buggy listener must not stop the reader
                log.exception("notification callback failed")

    def _fail_unnamed(self, exc: EngineError) -> None:
        """An error the engine could not name a request for (it could not read the id of the line): it
        answers one of the calls waiting here, and which one cannot be told, so each fails with it rather
        than one of them waiting forever."""
        log.warning("engine error for a request it could not name: %s", exc)
        for future, _ in list(self._pending.values()):
            if not future.done():
                future.set_exception(exc)

    def _fail_all(self, exc: EngineUnavailable) -> None:
        if self._closed is None:
            self._closed = exc
        for future, _ in list(self._pending.values()):
            if not future.done():
                future.set_exception(exc)
        for events in self._jobs.values():
            events.put_nowait(None)
