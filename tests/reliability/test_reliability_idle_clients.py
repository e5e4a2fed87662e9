"""Clients that connect and do nothing useful (issue 31): a TCP client that never authenticates is dropped at a
deadline however it trickles bytes, an idle one is dropped after the idle timeout, and a full listener refuses the
next connection in one line, so idle connections never grow the engine's threads without bound.

Only against 127.0.0.1, with the limits made small for the test and every loop bounded.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from engine.protocol import wire
from engine.server import listen
from engine.server.core import Engine
from engine.server.listen import Listener, bind_tcp

pytestmark = pytest.mark.reliability

TOKEN = "t" * 24
AUTH_S, IDLE_S, CAP = 1.0, 2.0, 6


@pytest.fixture()
def tcp(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    monkeypatch.setattr(listen, "AUTH_DEADLINE_S", AUTH_S)
    monkeypatch.setattr(listen, "IDLE_TIMEOUT_S", IDLE_S)
    monkeypatch.setattr(listen, "MAX_CONNECTIONS", CAP)
    monkeypatch.setattr(listen, "WATCH_INTERVAL_S", 0.1)
    engine = Engine(workers=1, where="idle-clients")
    listener = Listener(engine, bind_tcp("127.0.0.1:0"), "tcp", token=TOKEN).start()
    try:
        yield listener.sock.getsockname()[:2]
    finally:
        listener.close()
        engine.stop()
        engine.wait()


def _connect(address: tuple[str, int]) -> socket.socket:
    return socket.create_connection(address, timeout=5)


def _dropped_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> bool:
    """True when the engine closes `sock` within `seconds` (sending `trickle` every 0.2 s meanwhile)."""
    sock.settimeout(0.2)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if trickle:
                sock.sendall(trickle)
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def _ask(sock: socket.socket, request: dict[str, object]) -> dict[str, object]:
    sock.settimeout(5)
    sock.sendall(wire.encode(request))
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        assert chunk, "the engine hung up"
        data += chunk
    return json.loads(data.splitlines()[-1])


def _authenticated(address: tuple[str, int]) -> socket.socket:
    sock = _connect(address)
    assert _ask(sock, wire.request(1, wire.ENGINE_AUTH, {"token": TOKEN}))["result"] == {"ok": True}
    return sock


@pytest.mark.parametrize("trickle", [b"", b"{", b" "], ids=["silent", "one-byte-of-a-frame", "whitespace"])
def test_a_client_without_the_token_is_dropped_at_the_deadline_however_it_trickles(
        tcp: tuple[str, int], trickle: bytes) -> None:
    sock = _connect(tcp)
    started = time.monotonic()
    assert _dropped_within(sock, AUTH_S + 3, trickle)
    assert time.monotonic() - started < AUTH_S + 2
    sock.close()


def test_an_idle_authenticated_client_is_dropped_and_a_busy_one_is_not(tcp: tuple[str, int]) -> None:
    idle, busy = _authenticated(tcp), _authenticated(tcp)
    end, polls = time.monotonic() + IDLE_S + 1.5, 0
    while time.monotonic() < end:
        polls += 1
        assert "result" in _ask(busy, wire.request(polls + 1, wire.ENGINE_STATUS, {}))
        time.sleep(0.3)
    assert _dropped_within(idle, 1.0)
    assert "result" in _ask(busy, wire.request(999, wire.ENGINE_STATUS, {}))
    idle.close()
    busy.close()


def test_a_full_listener_refuses_in_one_line_and_threads_stay_bounded(tcp: tuple[str, int]) -> None:
    before = threading.active_count()
    held = [_authenticated(tcp) for _ in range(CAP)]
    extra = []
    for _ in range(3 * CAP):  # three times the cap: each refused, none adds a thread
        sock = _connect(tcp)
        sock.settimeout(5)
        line = sock.recv(65536)
        reply = json.loads(line.splitlines()[0])
        assert reply["error"]["code"] == wire.ENGINE_FULL
        assert "close another difflens client" in reply["error"]["data"]["fix"]
        assert _dropped_within(sock, 2.0)
        extra.append(sock)
    assert threading.active_count() - before <= 2 * CAP + 2
    for sock in held:
        assert "result" in _ask(sock, wire.request(7, wire.ENGINE_STATUS, {}))  # those inside are still served
        sock.close()
    for sock in extra:
        sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the freed places take new clients again
        try:
            again = _authenticated(tcp)
            break
        except (AssertionError, OSError):
            time.sleep(0.2)
    else:
        pytest.fail("no client was accepted after the others left")
    again.close()
