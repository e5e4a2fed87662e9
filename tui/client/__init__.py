"""The engine client: the one door through which the TUI and the CLI reach an engine (no torch here).

`connect(target)` opens an `EngineClient` (local socket, private stdio child, TCP with token, or ssh);
`run_sync` runs one method for the CLI. Errors are typed: `UserFacingError` (bad input, with a fix),
`EngineUnavailable` (no engine, or it went away), `JobCancelledError`, and `EngineError` for the rest.
"""

from engine.protocol.spawn import child_env
from tui.client.base import ClientFactory, EngineClient, EventCallback, NotificationCallback
from tui.client.connect import DEFAULT_REMOTE_CMD, REMOTE_CMD_ENV, SSH_ENV, connect, run_sync
from tui.client.errors import EngineError, EngineUnavailable, JobCancelledError, UserFacingError, error_from
from tui.client.rpc import RpcClient
from tui.client.transport import ProcessTransport, StreamTransport, Transport, engine_argv

__all__ = [
    "DEFAULT_REMOTE_CMD", "REMOTE_CMD_ENV", "SSH_ENV", "ClientFactory", "EngineClient", "EngineError",
    "EngineUnavailable", "EventCallback", "JobCancelledError", "NotificationCallback", "ProcessTransport", "RpcClient",
    "StreamTransport", "Transport", "UserFacingError", "child_env", "connect", "engine_argv", "error_from",
    "run_sync",
]
