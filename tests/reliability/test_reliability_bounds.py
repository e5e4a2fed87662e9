"""Every count, range and list a user types is bounded before anything is allocated, and every error reply
reaches the caller that sent the request: ranges are counted before they are expanded (the CLI, under a
memory limit that a billion-int list would break), list params are bounded on the engine's side, an
oversized or unparseable request is answered under its id, a request over the size limit is refused before
it is sent, and an error the engine cannot name a request for fails the calls waiting for it."""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
from collections.abc import Iterable
from typing import Any

import pytest

from engine.protocol import methods, wire
from engine.protocol.params import MAX_LIST_ITEMS, ParamsError
from tests.support.engine_helpers import PY, ROOT, engine_env, short_dir
from tests.support.scripted_transport import ScriptedTransport
from tui.client import EngineError, RpcClient, UserFacingError

pytestmark = pytest.mark.reliability

CLI = [PY, "-P", "-c", "from tui.cli import main; main()"]
MEMORY_LIMIT = 3 * 2**30   # address space for the CLI: plenty for it, far from a billion-int list


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    with short_dir() as runtime:
        return subprocess.run([*CLI, *args], env=engine_env(runtime), cwd=ROOT, capture_output=True, text=True,
                              timeout=60, preexec_fn=_limited)


@pytest.mark.parametrize("args", [
    ("compute", "--layers", "1-999999999"),
    ("compute", "--layers", "0-3,1-20000000"),
    ("compute", "--layers", "5," * 2000 + "5"),
    ("compute", "--layers", "9" * 5000),
    ("amplify", "--factor", "2", "--layers", "0-" + "9" * 5000),
])
def test_a_typed_range_is_counted_before_it_is_expanded(args: tuple[str, ...]) -> None:
    command, *rest = args
    argv = [command, *rest[:-2]]
    done = cli(*argv, "--base", "no-such-base", "--ft", "no-such-ft", *rest[-2:])
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and "--layers" in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr


def test_list_params_are_bounded_on_the_engines_side() -> None:
    with pytest.raises(ParamsError, match=f"more than {MAX_LIST_ITEMS:,}"):
        methods.AdlCompute.from_json({"base": "b", "ft": "f", "layers": list(range(MAX_LIST_ITEMS + 1))})
    assert methods.AdlCompute.from_json({"base": "b", "ft": "f", "layers": [0, 3]}).layers == [0, 3]


def engine_stdio(lines: list[bytes]) -> list[dict[str, Any]]:
    """What a private engine answers to `lines` (stdin then closed)."""
    with short_dir() as runtime:
        done = subprocess.run([PY, "-P", "-m", "engine", "serve", "--stdio"], input=b"".join(lines),
                              env=engine_env(runtime), cwd=ROOT, capture_output=True, timeout=120)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def test_an_oversized_or_broken_request_is_answered_under_its_id() -> None:
    huge = wire.encode(wire.request(7, "adl.compute", {"base": "b", "ft": "f", "layers": [1, 1]})).strip()
    huge = huge.replace(b"[1,1]", b"[" + b"1," * (wire.MAX_MESSAGE_BYTES // 2) + b"1]") + b"\n"
    broken = b'{"jsonrpc":"2.0","id":"x8","method":"engine.status","params":{"a":\n'
    nested = b'{"jsonrpc":"2.0","method":"engine.status","params":{"id":99,\n'   # no id of its own
    answers = engine_stdio([huge, broken, nested, json.dumps(wire.request(9, wire.ENGINE_HELLO)).encode() + b"\n"])
    by_id = {a.get("id"): a for a in answers}
    assert by_id[7]["error"]["code"] == wire.MESSAGE_TOO_LARGE
    assert by_id[7]["error"]["data"]["fix"]
    assert by_id["x8"]["error"]["code"] == wire.PARSE_ERROR
    assert by_id[None]["error"]["code"] == wire.PARSE_ERROR and 99 not in by_id
    assert "result" in by_id[9]   # and the engine still serves


def test_a_request_over_the_size_limit_is_refused_before_it_is_sent() -> None:
    async def scenario() -> None:
        transport = ScriptedTransport(lambda message: [wire.result(message["id"], {})])
        client = RpcClient(transport)
        with pytest.raises(UserFacingError, match="larger than"):
            await asyncio.wait_for(client.call("adl.compute", {"layers": [1] * wire.MAX_MESSAGE_BYTES}), 60)
        assert transport.sent == []
        assert await asyncio.wait_for(client.call("engine.status"), 5) == {}
        await client.close()

    asyncio.run(scenario())


def test_an_error_the_engine_cannot_name_a_request_for_fails_the_waiting_calls() -> None:
    def engine(message: dict[str, Any]) -> Iterable[dict[str, Any]]:
        if message["method"] == "garbled.on.the.way":
            yield wire.error(None, wire.PARSE_ERROR, "parse error: expecting value")

    async def scenario() -> None:
        client = RpcClient(ScriptedTransport(engine))
        with pytest.raises(EngineError, match="parse error"):
            await asyncio.wait_for(client.call("garbled.on.the.way"), 5)
        await client.close()

    asyncio.run(scenario())


def test_the_request_id_is_read_only_from_the_top_level_head() -> None:
    assert wire.request_id(b'{"jsonrpc":"2.0","id":12,"method":"m","params":{') == 12
    assert wire.request_id(b'{"id":"abc","method":"m"}') == "abc"
    assert wire.request_id(b'{"jsonrpc":"2.0","method":"m","params":{"id":3}}') is None
    assert wire.request_id(b"\xff\xfe garbage") is None
