"""The wire protocol and the client's own logic, without an engine process: framing, size limit, the
private runtime dir, token file checks, typed errors, and job-event routing over a scripted transport."""

from __future__ import annotations

import asyncio
import io
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from engine.protocol import paths, wire
from tests.support.scripted_transport import ScriptedTransport
from tui.client import (
    EngineError,
    EngineUnavailable,
    JobCancelledError,
    RpcClient,
    UserFacingError,
    error_from,
)


def test_encode_decode_round_trip_one_line_utf8() -> None:
    message = wire.request(7, "adl.compute", {"text": "naïve\nline", "n": 3})
    line = wire.encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert "naïve".encode() in line
    assert wire.decode(line) == message


@pytest.mark.parametrize(("line", "code"), [
    (b"{not json", wire.PARSE_ERROR),
    (b"\xff\xfe", wire.PARSE_ERROR),
    (b"[1, 2]", wire.INVALID_REQUEST),
    (b'"just a string"', wire.INVALID_REQUEST),
])
@pytest.mark.reliability
def test_decode_rejects_with_jsonrpc_codes(line: bytes, code: int) -> None:
    with pytest.raises(wire.ProtocolError) as info:
        wire.decode(line)
    assert info.value.code == code


@pytest.mark.reliability
def test_read_frame_drains_an_oversized_line_and_stays_in_sync() -> None:
    limit = 100
    stream = io.BytesIO(b'{"a":1}\n' + b"x" * 1000 + b"\n" + b'{"b":2}\n' + b"y" * limit + b"\n")
    assert wire.read_frame(stream.readline, limit) == b'{"a":1}\n'
    with pytest.raises(wire.ProtocolError) as info:
        wire.read_frame(stream.readline, limit)
    assert info.value.code == wire.MESSAGE_TOO_LARGE
    assert wire.read_frame(stream.readline, limit) == b'{"b":2}\n'
    assert wire.read_frame(stream.readline, limit) == b"y" * limit + b"\n"   # exactly at the limit
    assert wire.read_frame(stream.readline, limit) is None


@pytest.mark.reliability
def test_runtime_dir_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loose = tmp_path / "rt"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    monkeypatch.setenv("DIFFLENS_RUNTIME_DIR", str(loose))
    assert paths.runtime_dir() == loose
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    assert paths.default_socket_path() == loose / "engine.sock"


@pytest.mark.reliability
def test_token_file_must_be_owner_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFFLENS_TOKEN", raising=False)
    token = tmp_path / "token"
    token.write_text("s3cret-token-value-0123\n")
    token.chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        paths.read_token(token)
    token.chmod(0o600)
    assert paths.read_token(token) == "s3cret-token-value-0123"
    monkeypatch.setenv("DIFFLENS_TOKEN", "from-env")
    assert paths.read_token(token) == "from-env"


def test_error_objects_become_typed_exceptions() -> None:
    user = error_from({"code": wire.USER_ERROR, "message": "x",
                       "data": {"problem": "n must be positive", "fix": "pass -n 64"}})
    assert isinstance(user, UserFacingError)
    assert (user.problem, user.fix, str(user)) == ("n must be positive", "pass -n 64",
                                                   "n must be positive — pass -n 64")
    assert isinstance(error_from({"code": wire.JOB_CANCELLED, "message": "job cancelled"}), JobCancelledError)
    plain = error_from({"code": wire.INTERNAL_ERROR, "message": "RuntimeError: kaboom"})
    assert type(plain) is EngineError and plain.code == wire.INTERNAL_ERROR
    assert EngineUnavailable("gone").code == wire.UNAVAILABLE


# ---- RpcClient over a scripted transport ----


def job_engine(message: dict[str, Any]) -> Iterable[dict[str, Any]]:
    """A job whose every event is already on the wire right behind the `{"job": id}` answer."""
    if message["method"] == "work.long":
        yield wire.result(message["id"], {"job": "j1"})
        for done in (1, 2):
            yield wire.notification(wire.JOB_PROGRESS, {"job": "j1", "type": "progress", "done": done})
        yield wire.notification(wire.JOB_PARTIAL, {"job": "j1", "type": "partial", "x": 1})
        yield wire.notification(wire.JOB_DONE, {"job": "j1", "result": {"answer": 42}})
    elif message["method"] == "work.bad":
        yield wire.result(message["id"], {"job": "j2"})
        yield wire.notification(wire.JOB_FAILED, {"job": "j2", "error": wire.error_object(
            wire.USER_ERROR, "bad", {"problem": "bad corpus", "fix": "pass a file"})})


def test_run_job_sees_events_that_arrive_with_the_job_id() -> None:
    async def scenario() -> None:
        client = RpcClient(ScriptedTransport(job_engine))
        events: list[dict[str, Any]] = []
        seen: list[str] = []
        client.on_notification(lambda method, params: seen.append(method))
        assert await client.run_job("work.long", {}, events.append) == {"answer": 42}
        assert [e["type"] for e in events] == ["progress", "progress", "partial"]
        assert seen == [wire.JOB_PROGRESS, wire.JOB_PROGRESS, wire.JOB_PARTIAL, wire.JOB_DONE]
        with pytest.raises(UserFacingError, match="bad corpus — pass a file"):
            await client.run_job("work.bad")
        await client.close()

    asyncio.run(scenario())


def test_cancelling_the_awaiting_task_cancels_the_job() -> None:
    def engine(message: dict[str, Any]) -> Iterable[dict[str, Any]]:
        if message["method"] == "work.forever":
            yield wire.result(message["id"], {"job": "j9"})
        elif message["method"] == wire.JOB_CANCEL:
            yield wire.result(message["id"], {"job": "j9", "state": "running"})

    async def scenario() -> None:
        transport = ScriptedTransport(engine)
        client = RpcClient(transport)
        task = asyncio.create_task(client.run_job("work.forever"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert transport.sent[-1]["method"] == wire.JOB_CANCEL
        assert transport.sent[-1]["params"] == {"job": "j9"}
        await client.close()

    asyncio.run(scenario())


@pytest.mark.reliability
def test_a_closed_transport_fails_pending_calls_and_jobs_as_unavailable() -> None:
    def engine(message: dict[str, Any]) -> Iterable[dict[str, Any]]:
        if message["method"] == "work.forever":
            yield wire.result(message["id"], {"job": "j3"})
        return

    async def scenario() -> None:
        transport = ScriptedTransport(engine)
        client = RpcClient(transport)
        job = asyncio.create_task(client.run_job("work.forever"))
        call = asyncio.create_task(client.call("never.answered"))
        await asyncio.sleep(0.05)
        transport.inbox.put_nowait(None)   # the engine went away
        for pending in (job, call):
            with pytest.raises(EngineUnavailable, match="closed the connection"):
                await pending
        with pytest.raises(EngineUnavailable):
            await client.call("engine.status")
        await client.close()

    asyncio.run(scenario())


def test_protocol_module_is_plain_python() -> None:
    source = Path(wire.__file__).read_text()
    assert "import torch" not in source and "from engine." not in source
    assert os.path.basename(wire.__file__) == "wire.py"
