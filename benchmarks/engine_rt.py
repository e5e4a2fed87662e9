"""Engine round trip: `engine.status` (a small request) over the Unix socket of a running engine and over a
private stdio engine child, plus how long each takes to become ready (process start to first answer)."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from engine.protocol import wire
from engine.protocol.spawn import child_env
from engine.server import local
from tui.client import connect
from tui.client.transport import engine_argv

READY_TIMEOUT_S = 120.0


async def _round_trips(target: str, calls: int) -> dict[str, Any]:
    start = time.perf_counter()
    client = await connect(target)
    try:
        await client.call(wire.ENGINE_STATUS)
        ready = time.perf_counter() - start
        times = []
        for _ in range(calls):
            began = time.perf_counter()
            await client.call(wire.ENGINE_STATUS)
            times.append(1000 * (time.perf_counter() - began))
    finally:
        await client.close()
    times.sort()
    return {"calls": calls, "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(times[int(0.9 * (len(times) - 1))], 2), "connect_s": round(ready, 3)}


def _wait_for(path: Path, process: subprocess.Popen[bytes], started: float) -> float:
    """Until the engine answers on `path` (the socket file exists from bind, a moment before listen)."""
    while not local.is_running(path):
        if process.poll() is not None or time.perf_counter() - started > READY_TIMEOUT_S:
            raise RuntimeError(f"the engine did not open {path} (exit code {process.poll()})")
        time.sleep(0.02)
    return time.perf_counter() - started


def round_trip(runtime: Path, calls: int) -> dict[str, Any]:
    """Both transports; the socket engine is started here and stopped (by its pid) afterwards."""
    sock = runtime / "bench.sock"
    env = child_env() | {"DIFFLENS_RUNTIME_DIR": str(runtime)}
    started = time.perf_counter()
    process = subprocess.Popen(engine_argv("serve", "--socket", str(sock)), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        socket_start = _wait_for(sock, process, started)
        unix = asyncio.run(_round_trips(f"unix:{sock}", calls))
        unix["engine_start_s"] = round(socket_start, 3)
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    stdio = asyncio.run(_round_trips("stdio", calls))
    stdio["engine_start_s"] = stdio["connect_s"]
    return {"unix": unix, "stdio": stdio}
