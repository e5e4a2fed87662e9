"""The engine process for real: a background engine on a Unix socket (+ TCP with a token) shared by this
module, private stdio engines, clients over the socket and over `engine attach --stdio` (what ssh runs)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.protocol import wire
from engine.server import daemon
from tests.support.engine_helpers import (
    PY,
    ROOT,
    engine_cli,
    engine_env,
    free_port,
    short_dir,
    until,
    write_corpus,
)
from tui.client import (
    EngineClient,
    EngineError,
    EngineUnavailable,
    JobCancelledError,
    ProcessTransport,
    RpcClient,
    UserFacingError,
    connect,
    run_sync,
)

pytestmark = pytest.mark.reliability


class Engine:
    """The module's background engine: where it listens and how to reach it."""

    def __init__(self, runtime: Path, tcp_port: int) -> None:
        self.runtime = runtime
        self.sock = runtime / "engine.sock"
        self.tcp = f"127.0.0.1:{tcp_port}"
        self.token_file = runtime / "engine.token"
        self.env = engine_env(runtime)

    async def client(self, via: str) -> RpcClient:
        """A client over the socket itself, or through an `engine attach --stdio` bridge process."""
        if via == "unix":
            client = await connect(f"unix:{self.sock}")
            assert isinstance(client, RpcClient)
            return client
        argv = [PY, "-m", "engine", "attach", "--stdio", "--socket", str(self.sock), "--no-start"]
        return RpcClient(await ProcessTransport.spawn(argv, "attach bridge", env=self.env))


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with short_dir() as runtime:
        eng = Engine(runtime, free_port())
        started = engine_cli("start", "--socket", str(eng.sock), "--tcp", eng.tcp, "--token-file",
                             str(eng.token_file), "--workers", "2", env=eng.env)
        assert started.returncode == 0, started.stderr + started.stdout
        try:
            yield eng
        finally:
            stopped = engine_cli("stop", "--socket", str(eng.sock), env=eng.env)
            assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr + stopped.stdout
            assert not eng.sock.exists() and not (runtime / "engine.pid").exists()
            assert engine_cli("status", "--socket", str(eng.sock), env=eng.env).returncode == 1


def job_events(client: EngineClient) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    client.on_notification(lambda method, params: seen.append((method, params)))
    return seen


# ---- streaming, cancel, several clients, dropped clients ----

@pytest.mark.parametrize("via", ["unix", "attach"])
def test_long_job_streams_progress_before_its_result(engine: Engine, via: str) -> None:
    async def scenario() -> None:
        client = await engine.client(via)
        events: list[dict[str, Any]] = []
        result = await client.run_job("test.sleep_steps", {"steps": 4, "delay": 0.05}, events.append)
        assert result == {"steps": 4}
        progress = [e for e in events if e["type"] == "progress" and e["done"] > 0]
        assert [e["done"] for e in progress] == [1, 2, 3, 4]
        assert all(e["total"] == 4 and e["job"] == progress[0]["job"] for e in progress)
        assert [e["step"] for e in events if e["type"] == "partial"] == [1, 2, 3, 4]
        await client.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("via", ["unix", "attach"])
def test_cancel_stops_the_job_at_the_next_step(engine: Engine, via: str) -> None:
    async def scenario() -> None:
        client = await engine.client(via)
        events: list[dict[str, Any]] = []
        task = asyncio.create_task(client.run_job("test.sleep_steps", {"steps": 400, "delay": 0.05},
                                                  events.append))
        await until(lambda: any(e["type"] == "progress" and e["done"] >= 2 for e in events), what="progress")
        job_id = events[0]["job"]
        await client.cancel(job_id)
        started = time.monotonic()
        with pytest.raises(JobCancelledError):
            await task
        assert time.monotonic() - started < 2
        state = await client.call("job.result", {"job": job_id})
        assert state["state"] == "cancelled" and state["progress"]["done"] < 400
        await client.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("via", ["unix", "attach"])
def test_a_second_client_sees_and_follows_a_job_the_first_started(engine: Engine, via: str) -> None:
    async def scenario() -> None:
        first, second = await engine.client(via), await engine.client("unix")
        first_events: list[dict[str, Any]] = []
        task = asyncio.create_task(first.run_job("test.sleep_steps", {"steps": 12, "delay": 0.05},
                                                 first_events.append))
        await until(lambda: first_events, what="the first event")
        job_id = first_events[0]["job"]
        listed = (await second.call("job.list"))["jobs"]
        assert any(j["job"] == job_id and j["method"] == "test.sleep_steps" and j["state"] == "running"
                   for j in listed)
        second_events: list[dict[str, Any]] = []
        assert await second.follow(job_id, second_events.append) == {"steps": 12}
        assert await task == {"steps": 12}
        assert sum(e["type"] == "progress" for e in second_events) >= 2
        assert any(e["type"] == "partial" and e["step"] == 1 for e in second_events)  # replayed
        await first.close()
        await second.close()

    asyncio.run(scenario())


def test_a_watcher_of_every_job_sees_jobs_started_later(engine: Engine) -> None:
    async def scenario() -> None:
        watcher, worker = await engine.client("unix"), await engine.client("attach")
        seen = job_events(watcher)
        assert "jobs" in await watcher.call("job.subscribe")
        job_id = await worker.submit("test.sleep_steps", {"steps": 3})
        done = await until(lambda: [p for m, p in seen if m == wire.JOB_DONE and p["job"] == job_id],
                           what="job.done at the watcher")
        assert done[0]["result"] == {"steps": 3}
        assert sum(m == wire.JOB_PROGRESS and p["job"] == job_id for m, p in seen) >= 2
        methods = {m["name"]: m for m in (await watcher.call("engine.methods"))["methods"]}
        assert methods["test.sleep_steps"]["long"] is True and methods["test.echo"]["long"] is False
        assert methods["adl.compute"]["long"] is True and "job.cancel" in methods
        await watcher.close()
        await worker.close()

    asyncio.run(scenario())


def test_killing_a_client_mid_job_leaves_the_job_finishing(engine: Engine) -> None:
    async def scenario() -> None:
        first = await engine.client("attach")
        seen = job_events(first)
        job_id = await first.submit("test.sleep_steps", {"steps": 20, "delay": 0.05})
        await until(lambda: any(m == wire.JOB_PROGRESS and p["done"] >= 1 for m, p in seen), what="progress")
        assert isinstance(first.transport, ProcessTransport)
        first.transport.proc.kill()   # the bridge dies as it would when an ssh connection drops
        with pytest.raises(EngineUnavailable):
            await asyncio.wait_for(first.call("job.list"), 10)
        await first.close()
        second = await engine.client("unix")
        assert await second.follow(job_id) == {"steps": 20}
        assert (await second.call("job.result", {"job": job_id}))["state"] == "done"
        await second.close()

    asyncio.run(scenario())


def test_an_adl_compute_outlives_its_client_and_is_cached(engine: Engine, tiny_dir: Path, tiny_ft_dir: Path,
                                                          tmp_path: Path) -> None:
    params = {"base": str(tiny_dir), "ft": str(tiny_ft_dir), "corpus": str(write_corpus(tmp_path / "c.txt")),
              "n": 40, "k": 3, "batch_size": 4, "device": "cpu"}

    async def scenario() -> None:
        first = await engine.client("attach")
        job_id = await first.submit("adl.compute", params)
        assert isinstance(first.transport, ProcessTransport)
        first.transport.proc.kill()
        await first.close()
        second = await engine.client("unix")
        computed = await second.follow(job_id)
        assert computed["cached"] is False and computed["shape"] == [4, 3, 32]
        again = await second.run_job("adl.compute", params)
        assert again["cached"] is True and again["run"] == computed["run"]
        status = await second.call("engine.status")
        assert {m["spec"] for m in status["models"]} >= {tiny_dir.name, tiny_ft_dir.name}
        await second.close()

    asyncio.run(scenario())


# ---- bad input over the raw socket: errors, and the engine keeps serving ----

def raw_exchange(sock_path: Path, lines: list[bytes], expect: int) -> list[dict[str, Any]]:
    """Send raw lines, read `expect` answers (order across requests is not fixed)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(str(sock_path))
        reader = conn.makefile("rb")
        for line in lines:
            conn.sendall(line)
        return [json.loads(reader.readline()) for _ in range(expect)]


def test_bad_messages_get_jsonrpc_errors_and_the_engine_keeps_serving(engine: Engine) -> None:
    too_big = b'{"jsonrpc":"2.0","id":99,"method":"test.echo","params":{"x":"' \
        + b"x" * (wire.MAX_MESSAGE_BYTES + 10) + b'"}}\n'
    lines = [
        b"{this is not json\n",
        b"[1, 2, 3]\n",
        b'{"jsonrpc":"2.0","id":1}\n',
        b'{"jsonrpc":"2.0","id":2,"method":"no.such.method"}\n',
        b'{"jsonrpc":"2.0","id":3,"method":"test.typed","params":{"n":"seven"}}\n',
        b'{"jsonrpc":"2.0","id":4,"method":"test.typed","params":[7]}\n',
        b'{"jsonrpc":"2.0","id":5,"method":"test.boom"}\n',
        too_big,
        b'{"jsonrpc":"2.0","id":6,"method":"job.cancel","params":{"job":"nope"}}\n',
        b'{"jsonrpc":"2.0","id":7,"method":"test.typed","params":{"n":21}}\n',
    ]
    answers = raw_exchange(engine.sock, lines, expect=10)
    by_id = {a["id"]: a for a in answers if a["id"] is not None}
    anonymous = sorted(a["error"]["code"] for a in answers if a["id"] is None)
    assert anonymous == sorted([wire.PARSE_ERROR, wire.INVALID_REQUEST])
    assert by_id[99]["error"]["code"] == wire.MESSAGE_TOO_LARGE   # answered under the id its head names
    assert by_id[1]["error"]["code"] == wire.INVALID_REQUEST
    assert by_id[2]["error"]["code"] == wire.METHOD_NOT_FOUND
    assert by_id[3]["error"]["code"] == wire.USER_ERROR
    assert by_id[3]["error"]["data"] == {"problem": "parameter 'n' must be int, got str", "fix": "pass n as a int"}
    assert by_id[4]["error"]["code"] == wire.INVALID_PARAMS
    assert by_id[5]["error"]["code"] == wire.INTERNAL_ERROR and "kaboom" in by_id[5]["error"]["message"]
    assert by_id[6]["error"]["code"] == wire.JOB_NOT_FOUND
    assert by_id[7]["result"] == {"n": 42}
    # the same connection-less engine still answers new clients
    assert raw_exchange(engine.sock, [wire.encode(wire.request(1, "test.echo", {"a": 1}))], 1)[0][
        "result"] == {"echo": {"a": 1}}


def test_a_slow_short_op_does_not_block_other_requests(engine: Engine) -> None:
    async def scenario() -> None:
        client = await engine.client("unix")
        slow = asyncio.create_task(client.call("test.slow", {"seconds": 3}))
        started = time.monotonic()
        assert await client.call("test.echo", {"q": 1}) == {"echo": {"q": 1}}
        assert time.monotonic() - started < 2
        assert not slow.done()
        assert await slow == {"slept": True}
        await client.close()

    asyncio.run(scenario())


# ---- TCP: a token or nothing ----

def test_tcp_without_the_token_is_refused(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    assert stat.S_IMODE(engine.token_file.stat().st_mode) == 0o600
    host, port = engine.tcp.split(":")
    for first_line in (wire.encode(wire.request(1, "test.echo", {"a": 1})),
                       wire.encode(wire.request(1, wire.ENGINE_AUTH, {"token": "wrong" * 8}))):
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(first_line + wire.encode(wire.request(2, "test.echo", {"a": 2})))
            reader = conn.makefile("rb")
            answer = json.loads(reader.readline())
            assert answer["error"]["code"] == wire.UNAUTHORIZED
            assert reader.readline() == b""   # and the connection is closed: request 2 never ran

    async def scenario() -> None:
        monkeypatch.setenv("DIFFLENS_TOKEN_FILE", str(engine.token_file))
        client = await connect(f"tcp:{engine.tcp}")
        assert await client.call("test.echo", {"t": 1}) == {"echo": {"t": 1}}
        await client.close()
        monkeypatch.setenv("DIFFLENS_TOKEN", "not-the-token-at-all")
        with pytest.raises(UserFacingError, match="no valid token"):
            await connect(f"tcp:{engine.tcp}")

    asyncio.run(scenario())


# ---- the daemon: files, refusing twice, stale sockets ----

def test_socket_and_files_are_private_and_a_second_start_is_refused(engine: Engine) -> None:
    assert stat.S_IMODE(engine.sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(engine.runtime.stat().st_mode) == 0o700
    pid = int((engine.runtime / "engine.pid").read_text())
    again = engine_cli("start", "--socket", str(engine.sock), env=engine.env)
    assert again.returncode == 2 and "already runs" in again.stderr and str(pid) in again.stderr
    serve = engine_cli("serve", "--socket", str(engine.sock), env=engine.env, timeout=60)
    assert serve.returncode == 2 and "already runs" in serve.stderr
    status = engine_cli("status", "--socket", str(engine.sock), env=engine.env)
    assert status.returncode == 0 and f"engine pid {pid}" in status.stdout


def test_a_stale_socket_is_removed_and_a_crashed_engine_releases_its_claim(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with short_dir() as runtime:
        env = engine_env(runtime)
        sock = runtime / "engine.sock"
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(sock))
        dead.close()    # the file stays behind, nothing listens: what a killed engine leaves
        started = engine_cli("start", "--socket", str(sock), env=env)
        assert started.returncode == 0, started.stderr
        pid = int((runtime / "engine.pid").read_text())
        assert "removing stale socket" in (runtime / "engine.log").read_text()
        monkeypatch.setenv("DIFFLENS_RUNTIME_DIR", str(runtime))
        assert asyncio.run(_describe_default()) == f"local socket {sock}"
        os.kill(pid, signal.SIGKILL)      # a crash: socket and pid file stay behind
        time.sleep(0.3)
        assert sock.exists()
        assert engine_cli("status", "--socket", str(sock), env=env).returncode == 1
        lock = daemon.claim_socket(sock)  # what the next `serve` does first
        assert not sock.exists() and int((runtime / "engine.pid").read_text()) == os.getpid()
        lock.release()
        assert not (runtime / "engine.pid").exists()


async def _describe_default() -> str:
    client = await connect()
    try:
        await client.call("test.echo")
        return client.description
    finally:
        await client.close()


# ---- a private engine over stdio ----

def test_private_stdio_engine_streams_cancels_and_rejects_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    with short_dir() as runtime:
        for key, value in engine_env(runtime).items():
            monkeypatch.setenv(key, value)

        async def scenario() -> None:
            client = await connect()      # no engine on the default socket: a private child
            assert client.description == "private engine (stdio)"
            assert isinstance(client, RpcClient) and isinstance(client.transport, ProcessTransport)
            events: list[dict[str, Any]] = []
            assert await client.run_job("test.sleep_steps", {"steps": 3}, events.append) == {"steps": 3}
            assert sum(e["type"] == "progress" and e["done"] > 0 for e in events) == 3
            second: list[dict[str, Any]] = []
            task = asyncio.create_task(client.run_job("test.sleep_steps", {"steps": 400}, second.append))
            await until(lambda: len(second) > 2, what="progress of the second job")
            await client.cancel(second[-1]["job"])
            with pytest.raises(JobCancelledError):
                await task
            with pytest.raises(UserFacingError) as info:
                await client.call("test.typed", {"n": 1.5})
            assert info.value.problem == "parameter 'n' must be int, got float"
            with pytest.raises(EngineError) as unknown:
                await client.call("no.such.method")
            assert unknown.value.code == wire.METHOD_NOT_FOUND
            assert await client.call("test.noisy") == {"ok": True}   # stray stdout did not break the stream
            assert await client.call("test.echo", {"still": "here"}) == {"echo": {"still": "here"}}
            proc = client.transport.proc
            await client.close()
            assert proc.returncode == 0   # the private engine exits with its client

        asyncio.run(scenario())


def test_private_stdio_engine_rejects_raw_garbage_and_oversized_lines() -> None:
    with short_dir() as runtime:
        proc = subprocess.Popen([PY, "-m", "engine", "serve", "--stdio"], env=engine_env(runtime), cwd=ROOT,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"garbage\n" + b"{" * (wire.MAX_MESSAGE_BYTES + 1) + b"\n"
                         + wire.encode(wire.request(1, "test.echo", {"ok": 1})))
        proc.stdin.close()
        answers = [json.loads(line) for line in proc.stdout]
        assert proc.wait(60) == 0
        assert [a.get("error", {}).get("code") for a in answers[:2]] == [wire.PARSE_ERROR,
                                                                        wire.MESSAGE_TOO_LARGE]
        assert answers[2]["result"] == {"echo": {"ok": 1}}


def test_run_sync_asks_whether_a_method_is_long(engine: Engine) -> None:
    events: list[dict[str, Any]] = []
    target = f"unix:{engine.sock}"
    assert run_sync("test.sleep_steps", {"steps": 2}, target=target, on_event=events.append) == {"steps": 2}
    assert any(e["type"] == "progress" for e in events)
    assert run_sync("test.echo", {"z": 1}, target=target) == {"echo": {"z": 1}}
    with pytest.raises(EngineUnavailable):
        run_sync("test.echo", target=f"unix:{engine.runtime}/missing.sock")
    with pytest.raises(UserFacingError, match="unknown engine target"):
        run_sync("test.echo", target="carrier-pigeon")


# ---- bounded work before and after the token (issue 23) ----

def test_an_unauthenticated_tcp_client_is_dropped_after_a_few_kib(engine: Engine) -> None:
    """A client without the token cannot make the engine read (let alone parse) a 60 MB line."""
    host, port = engine.tcp.split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        block = b"x" * (1 << 20)
        try:
            while sent < 60 << 20:
                conn.sendall(block)
                sent += len(block)
        except OSError:
            pass  # the engine hung up: what it should do
        assert sent < 60 << 20, "the engine kept reading an unauthenticated 60 MB line"
    shallow = raw_exchange(engine.sock, [wire.encode(wire.request(1, wire.ENGINE_STATUS))], 1)
    assert "result" in shallow[0]


def test_json_nested_200000_deep_gets_an_error_reply_and_the_connection_serves_on(engine: Engine) -> None:
    deep = b"[" * 200_000 + b"]" * 200_000 + b"\n"
    nested_params = b'{"jsonrpc":"2.0","id":7,"method":"test.echo","params":{"a":' + b"[" * 100 + b"]" * 100 + b"}}\n"
    answers = raw_exchange(engine.sock, [deep, nested_params,
                                         wire.encode(wire.request(8, "test.echo", {"a": 1}))], 3)
    errors = {a.get("id"): a["error"]["code"] for a in answers if "error" in a}
    assert errors == {None: wire.PARSE_ERROR, 7: wire.PARSE_ERROR}  # 7: named at the head of its line
    assert any("nested deeper" in a["error"]["message"] for a in answers if "error" in a)
    assert [a["result"] for a in answers if a.get("id") == 8] == [{"echo": {"a": 1}}]


# ---- paths the user gives are never clobbered (issue 23) ----

@pytest.mark.parametrize("kind", ["regular_file", "directory", "symlink", "foreign_pid", "foreign_log"])
def test_engine_start_never_clobbers_what_is_at_the_socket_path(kind: str) -> None:
    with short_dir() as runtime:
        env = engine_env(runtime)
        sock = runtime / "notes.txt"
        pid, log = sock.with_suffix(".pid"), sock.with_suffix(".log")
        pid.write_text("my own pid notes\n")
        log.write_text("my own log\n")
        log.chmod(0o644)
        if kind == "regular_file":
            sock.write_text("precious")
        elif kind == "directory":
            sock.mkdir()
        elif kind == "symlink":
            sock.symlink_to(runtime / "elsewhere")
        elif kind == "foreign_pid":
            log.unlink()
        else:
            pid.unlink()
        before = {p.name: (p.lstat().st_mode, p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
                  for p in runtime.iterdir()}
        started = engine_cli("start", "--socket", str(sock), env=env)
        assert started.returncode == 2, started.stdout + started.stderr
        lines = started.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in started.stderr
        assert "not an engine socket" in lines[0] or "not a file this engine wrote" in lines[0]
        after = {p.name: (p.lstat().st_mode, p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
                 for p in runtime.iterdir()}
        assert after == before


def test_an_agent_without_an_llm_is_refused_at_submission_not_after_the_queue(engine: Engine) -> None:
    """Both workers busy: `agent.run` with no LLM configured is still answered at once, with commands that work
    offline, and no job is made."""
    async def scenario() -> None:
        client = await engine.client("unix")
        busy = [await client.submit("test.sleep_steps", {"steps": 400, "delay": 0.05}) for _ in range(3)]
        started = time.monotonic()
        with pytest.raises(UserFacingError, match=r"no LLM is configured.*`difflens agent adl-x --keywords`"):
            await client.submit("agent.run", {"run": "adl-x"})
        assert time.monotonic() - started < 5
        assert "agent.run" not in {j["method"] for j in (await client.call("job.list"))["jobs"]}
        for job in busy:
            await client.cancel(job)
        await client.close()

    assert "DIFFLENS_LLM_MODEL" not in engine.env
    asyncio.run(scenario())


def test_engine_status_does_not_count_the_client_that_asks(engine: Engine) -> None:
    async def scenario() -> None:
        other = await engine.client("unix")
        for _ in range(100):  # clients of earlier tests may take a moment to be noticed gone
            status = engine_cli("status", "--socket", str(engine.sock), "--json", env=engine.env)
            if json.loads(status.stdout)["clients"] == 1:
                break
            await asyncio.sleep(0.1)
        assert json.loads(status.stdout)["clients"] == 1  # `other`, not the status command itself
        assert (await other.call("engine.status"))["clients"] == 0
        await other.close()

    asyncio.run(scenario())
