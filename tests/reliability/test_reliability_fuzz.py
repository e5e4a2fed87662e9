"""Fuzzing the engine's front door (hypothesis): the line framer, the JSON-RPC decoder, and a real in-process
`Engine` serving a `Peer` fed random lines. Nothing crashes it; every request is answered with one JSON-RPC
result or error (notifications with none); unexpected ops errors never come from bad params; it keeps serving;
and without the token nothing but refusals comes back."""

from __future__ import annotations

import io
import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.ops import EXTRA_OPS_ENV
from engine.protocol import wire
from engine.server.core import Engine
from engine.server.peer import Peer

pytestmark = pytest.mark.reliability

FUZZ = settings(max_examples=200, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Short methods that are safe to call with any params (no model loads, no shutdown); long ops start jobs and
# `engine.shutdown` stops the engine, so they are left to the engine-server tests.
METHODS = ["test.echo", "test.typed", "test.boom", "adl.runs", "adl.summary", "readout.logit_lens",
           "readout.lens_grid", "organism.list", "engine.methods", "engine.status", "engine.auth", "job.list",
           "job.cancel", "job.result", "job.subscribe"]
PARAM_KEYS = ["n", "run", "job", "layer", "pos", "top_k", "source", "layers", "positions", "token", "x"]

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=12)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
params = json_values | st.dictionaries(st.sampled_from(PARAM_KEYS), json_values, max_size=4)
ids = st.integers() | st.text(max_size=6) | st.none() | st.booleans() | st.floats(allow_nan=False) \
    | st.lists(st.integers(), max_size=2)
messages = st.fixed_dictionaries({}, optional={
    "jsonrpc": st.sampled_from(["2.0", "1.0"]) | json_values, "id": ids,
    "method": st.sampled_from(METHODS) | st.text(max_size=16), "params": params})
lines = st.lists(st.one_of(
    messages.map(lambda m: wire.encode(m).rstrip(b"\n")),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
), min_size=1, max_size=8)

PROBE = wire.encode(wire.request("probe", "test.echo", {"alive": True})).rstrip(b"\n")


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    before = os.environ.get(EXTRA_OPS_ENV)
    os.environ[EXTRA_OPS_ENV] = "tests.support.engine_test_ops"
    eng = Engine(workers=1, where="fuzz")
    try:
        yield eng
    finally:
        eng.stop()
        eng.wait()
        if before is None:
            os.environ.pop(EXTRA_OPS_ENV, None)
        else:
            os.environ[EXTRA_OPS_ENV] = before


def exchange(engine: Engine, sent: list[bytes], token: str | None = None) -> list[dict[str, Any]]:
    """Serve `sent` to one in-memory client until it hangs up; every line it got back, parsed."""
    reader, written = io.BytesIO(b"".join(line + b"\n" for line in sent)), io.BytesIO()
    peer = Peer(engine, label="fuzz", readline=reader.readline, write=written.write, close=lambda: None,
                token=token)
    engine.attach(peer)
    peer.serve()
    peer.wait_closed(30)
    return [json.loads(line) for line in written.getvalue().splitlines()]


def answers_expected(line: bytes) -> int:
    """JSON-RPC 2.0: one answer per request or unreadable message, none for a well-formed notification."""
    if not line.strip():
        return 0
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return 1
    if not isinstance(message, dict):
        return 1
    id_ = message.get("id")
    well_formed = message.get("jsonrpc") == "2.0" and isinstance(message.get("method"), str) \
        and isinstance(id_, str | int | None) and not isinstance(id_, bool)
    return 0 if well_formed and "id" not in message else 1


def is_response(answer: dict[str, Any]) -> bool:
    if answer.get("jsonrpc") != "2.0" or "id" not in answer or ("result" in answer) == ("error" in answer):
        return False
    if "result" in answer:
        return isinstance(answer["result"], dict)
    error = answer["error"]
    return isinstance(error.get("code"), int) and isinstance(error.get("message"), str)


@FUZZ
@given(data=st.binary(max_size=300), limit=st.integers(1, 40))
@example(data=b"x" * 23 + b"\n" + b"y" * 24 + b"\n", limit=23)  # the boundary: a message of exactly `limit` bytes
def test_read_frame_keeps_any_byte_stream_in_sync(data: bytes, limit: int) -> None:
    stream, frames = io.BytesIO(data), []
    while True:
        try:
            frame = wire.read_frame(stream.readline, limit)
        except wire.ProtocolError as exc:
            assert exc.code == wire.MESSAGE_TOO_LARGE
            frames.append(None)
            continue
        if frame is None:
            break
        assert len(frame) <= limit or frame.endswith(b"\n")
        frames.append(frame)
    pieces = data.split(b"\n")
    expected = [p + b"\n" for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
    assert len(frames) == len(expected)
    for got, want in zip(frames, expected, strict=True):
        assert got == (want if len(want.removesuffix(b"\n")) <= limit else None)  # the limit is on the message


@FUZZ
@given(line=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_decode_returns_an_object_or_a_protocol_error(line: bytes) -> None:
    try:
        assert isinstance(wire.decode(line), dict)
    except wire.ProtocolError as exc:
        assert exc.code in (wire.PARSE_ERROR, wire.INVALID_REQUEST)


@FUZZ
@given(sent=lines)
def test_the_engine_answers_every_request_and_keeps_serving(engine: Engine, sent: list[bytes]) -> None:
    answers = exchange(engine, [*sent, PROBE])
    assert all(is_response(a) for a in answers), answers
    assert len(answers) == sum(map(answers_expected, sent)) + 1
    assert [a["result"] for a in answers if a["id"] == "probe"] == [{"echo": {"alive": True}}]
    internal = [a for a in answers if "error" in a and a["error"]["code"] == wire.INTERNAL_ERROR]
    assert all("kaboom" in a["error"]["message"] for a in internal), internal   # only test.boom's own bug


TOKEN = secrets.token_hex(16)


@FUZZ
@given(sent=lines)
def test_without_the_token_nothing_is_served(engine: Engine, sent: list[bytes]) -> None:
    answers = exchange(engine, [*sent, PROBE], token=TOKEN)
    assert all(is_response(a) and "error" in a for a in answers), answers
    refused = [a for a in answers if a["error"]["code"] == wire.UNAUTHORIZED]
    assert len(refused) == 1 and answers[-1] is refused[0], "the first request is refused and the line hung up"
    assert exchange(engine, [wire.encode(wire.request(1, "engine.auth", {"token": TOKEN})).rstrip(),
                             PROBE], token=TOKEN)[-1]["result"] == {"echo": {"alive": True}}
