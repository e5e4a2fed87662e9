"""Finding an engine: a target string to an open `EngineClient`, and `run_sync` for the CLI.

Targets
    None                 the local engine's socket if one answers, else a private engine child over stdio
    "stdio"              always a private engine child (`python -m engine serve --stdio`)
    "unix:/path"         the engine on that Unix socket
    "tcp:127.0.0.1:PORT" TCP with the token (`DIFFLENS_TOKEN`, else the 0600 token file)
    "ssh:user@host"      `ssh user@host difflens engine attach --stdio` with the system ssh, keys, agent
                         and config, in batch mode (`DIFFLENS_SSH` replaces the ssh command, e.g.
                         `ssh -F cfg`; `DIFFLENS_REMOTE_CMD` the remote command)
"""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path
from typing import Any

from engine.protocol import paths, wire
from engine.protocol.spawn import child_env
from tui.client.base import EngineClient, EventCallback
from tui.client.errors import EngineError, EngineUnavailable, UserFacingError
from tui.client.rpc import RpcClient
from tui.client.transport import (
    READ_LIMIT,
    ProcessTransport,
    StreamTransport,
    Transport,
    engine_argv,
)

REMOTE_CMD_ENV = "DIFFLENS_REMOTE_CMD"
DEFAULT_REMOTE_CMD = "difflens engine attach --stdio"
SSH_ENV = "DIFFLENS_SSH"
CONNECT_TIMEOUT_S = 10.0


async def connect(target: str | None = None) -> EngineClient:
    """An open client for `target` (see the module doc); raises `EngineUnavailable` if none answers."""
    try:
        return await _connect(target)
    except PermissionError as exc:   # e.g. a runtime dir owned by someone else
        raise UserFacingError(str(exc), "set DIFFLENS_RUNTIME_DIR to a directory of your own") from None


async def _connect(target: str | None) -> EngineClient:
    if target is None:
        sock = paths.default_socket_path()
        if sock.exists():
            try:
                return RpcClient(await _unix(sock))
            except EngineUnavailable:
                pass  # a stale socket: work with a private engine instead
        return await _handshake(RpcClient(await _private_child()))
    kind, sep, rest = target.partition(":")
    if kind == "stdio" and not rest:
        return await _handshake(RpcClient(await _private_child()))
    if not sep or not rest:
        raise UserFacingError(f"unknown engine target {target!r}",
                              "use unix:/path/engine.sock, tcp:127.0.0.1:PORT, ssh:user@host or stdio")
    if kind == "unix":
        return RpcClient(await _unix(Path(rest).expanduser()))
    if kind == "tcp":
        return await _tcp(rest)
    if kind == "ssh":
        return await _handshake(RpcClient(await _ssh(rest)))
    raise UserFacingError(f"unknown engine target kind {kind!r}", "use unix:, tcp:, ssh: or stdio")


def run_sync(method: str, params: dict[str, Any] | None = None, *, target: str | None = None,
             on_event: EventCallback | None = None, long: bool | None = None) -> dict[str, Any]:
    """For the CLI: connect, run one method (as a job if it is long; asked of the engine when `long` is
    None), close. Ctrl-C cancels the job."""

    async def go() -> dict[str, Any]:
        client = await connect(target)
        try:
            is_long = long
            if is_long is None:
                methods = await client.methods() if isinstance(client, RpcClient) else {}
                is_long = bool(methods.get(method, {}).get("long", False))
            if is_long:
                return await client.run_job(method, params, on_event)
            return await client.call(method, params)
        finally:
            await client.close()

    return asyncio.run(go())


async def _unix(path: Path) -> Transport:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=READ_LIMIT), CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise EngineUnavailable(f"no engine answers on {path}: {exc}") from None
    return StreamTransport(reader, writer, f"local socket {path}")


async def _tcp(address: str) -> EngineClient:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UserFacingError(f"bad TCP address {address!r}", "use tcp:127.0.0.1:PORT")
    try:
        token = paths.read_token()
    except OSError as exc:
        raise UserFacingError(f"no token for the TCP engine: {exc}",
                              "set DIFFLENS_TOKEN or DIFFLENS_TOKEN_FILE to the engine's token") from None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host.strip("[]"), int(port), limit=READ_LIMIT), CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        raise EngineUnavailable(f"no engine answers on tcp {address}: {exc}") from None
    client = RpcClient(StreamTransport(reader, writer, f"tcp {address}"))
    try:
        await client.call(wire.ENGINE_AUTH, {"token": token})
    except EngineError:
        await client.close()
        raise
    return client


async def _private_child() -> Transport:
    argv = engine_argv("serve", "--stdio")
    # its own session: Ctrl-C reaches only us; we cancel the job and close, and the child exits
    return await ProcessTransport.spawn(argv, "private engine (stdio)", env=child_env(), new_session=True)


async def _ssh(destination: str) -> Transport:
    ssh = shlex.split(os.environ.get(SSH_ENV, "ssh"))
    remote = os.environ.get(REMOTE_CMD_ENV, DEFAULT_REMOTE_CMD)
    # never prompt (a prompt would land in the TUI or hang a script); options in DIFFLENS_SSH come first
    # and so win, e.g. DIFFLENS_SSH="ssh -o BatchMode=no"
    argv = [*ssh, "-o", "BatchMode=yes", "--", destination, remote]
    return await ProcessTransport.spawn(argv, f"ssh {destination}")


async def _handshake(client: RpcClient) -> RpcClient:
    """One round trip, so that a child that cannot start (ssh refused, import error) fails here; `engine.hello`
    answers before the engine's ops have loaded, so a kept answer is not held up by the torch import."""
    try:
        await client.call(wire.ENGINE_HELLO)
    except EngineError:
        await client.close()
        raise
    return client
