"""Remote engine over a real `sshd` on 127.0.0.1 with a throwaway key: the client runs the system `ssh`,
the far end runs `engine attach --stdio`, which starts a background engine that outlives the connection.

Needs Debian's openssh-server (`apt-get install -y openssh-server`); skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.protocol import wire
from tests.support.engine_helpers import PY, ROOT, TEST_OPS, engine_cli, engine_env, free_port, short_dir, until
from tui.client import DEFAULT_REMOTE_CMD, EngineUnavailable, ProcessTransport, RpcClient, connect

pytestmark = pytest.mark.reliability

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _start_sshd(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """sshd on a free port of 127.0.0.1 that accepts only the test's key for the current user."""
    if not os.path.exists(SSHD) or not shutil.which("ssh") or not shutil.which("ssh-keygen"):
        pytest.skip("sshd/ssh not installed: apt-get install -y openssh-server")
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)], check=True)
    (work / "authorized_keys").write_text((work / "client_key.pub").read_text())
    (work / "authorized_keys").chmod(0o600)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)   # sshd's privilege separation directory
    port = free_port()
    (work / "sshd_config").write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {work / "host_key"}
AuthorizedKeysFile {work / "authorized_keys"}
PidFile {work / "sshd.pid"}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
""")
    sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", str(work / "sshd_config")], stdout=subprocess.DEVNULL,
                            stderr=open(work / "sshd.log", "wb"))  # noqa: SIM115 - lives as long as sshd
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if sshd.poll() is not None:
            pytest.skip(f"sshd could not start here: {(work / 'sshd.log').read_text().strip()[-300:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return sshd, port
        except OSError:
            time.sleep(0.1)
    sshd.kill()
    pytest.skip("sshd did not start listening within 15 s")


class Remote:
    def __init__(self, work: Path, port: int) -> None:
        self.work = work
        self.runtime = work / "remote-rt"        # the far side's runtime dir (same machine, other dir)
        self.sock = self.runtime / "engine.sock"
        self.ssh_config = work / "ssh_config"
        self.ssh_config.write_text(f"""\
Host enginebox
    HostName 127.0.0.1
    Port {port}
    User {getpass.getuser()}
    IdentityFile {work / "client_key"}
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
""")
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in {
            "DIFFLENS_RUNTIME_DIR": str(self.runtime), "DIFFLENS_HOME": str(work / "remote-home"),
            "DIFFLENS_EXTRA_OPS": TEST_OPS}.items())
        # what `difflens engine attach --stdio` runs, spelled with this venv's python
        self.remote_cmd = f"cd {shlex.quote(str(ROOT))} && env {env} {shlex.quote(PY)} -m engine attach --stdio"


@pytest.fixture(scope="module")
def remote() -> Iterator[Remote]:
    with short_dir("dl-ssh-") as work:
        sshd, port = _start_sshd(work)
        rem = Remote(work, port)
        try:
            yield rem
        finally:
            engine_cli("stop", "--socket", str(rem.sock), env=engine_env(rem.runtime))
            sshd.terminate()
            sshd.wait(10)


@pytest.fixture
def ssh_env(remote: Remote, monkeypatch: pytest.MonkeyPatch) -> Remote:
    monkeypatch.setenv("DIFFLENS_SSH", f"ssh -F {remote.ssh_config}")
    monkeypatch.setenv("DIFFLENS_REMOTE_CMD", remote.remote_cmd)
    return remote


def test_default_remote_command_is_the_difflens_cli() -> None:
    assert DEFAULT_REMOTE_CMD == "difflens engine attach --stdio"


def test_a_job_over_ssh_streams_and_survives_a_dropped_connection(ssh_env: Remote) -> None:
    async def scenario() -> None:
        first = await connect("ssh:enginebox")     # no engine on the far side yet: attach starts one
        assert first.description == "ssh enginebox"
        events: list[dict[str, Any]] = []
        assert await first.run_job("test.sleep_steps", {"steps": 3}, events.append) == {"steps": 3}
        assert sum(e["type"] == "progress" and e["done"] > 0 for e in events) == 3
        assert ssh_env.sock.exists()
        status = await first.call(wire.ENGINE_STATUS)
        assert status["where"] == f"unix:{ssh_env.sock}"

        seen: list[tuple[str, dict[str, Any]]] = []
        first.on_notification(lambda method, params: seen.append((method, params)))
        job_id = await first.submit("test.sleep_steps", {"steps": 20, "delay": 0.05})
        await until(lambda: any(p.get("done", 0) >= 1 for _, p in seen), what="remote progress")
        assert isinstance(first, RpcClient) and isinstance(first.transport, ProcessTransport)
        first.transport.proc.kill()                # the ssh connection drops mid-job
        with pytest.raises(EngineUnavailable):
            await asyncio.wait_for(first.call("job.list"), 10)
        await first.close()

        second = await connect("ssh:enginebox")    # the same engine, still warm
        assert isinstance(second, RpcClient)
        listed = {j["job"]: j for j in (await second.call("job.list"))["jobs"]}
        assert listed[job_id]["method"] == "test.sleep_steps"
        assert await second.follow(job_id) == {"steps": 20}
        assert (await second.call(wire.ENGINE_STATUS))["pid"] == status["pid"]
        await second.close()

    asyncio.run(scenario())


def test_an_unreachable_host_is_reported_with_sshs_words(ssh_env: Remote) -> None:
    async def scenario() -> None:
        with pytest.raises(EngineUnavailable) as info:
            await connect("ssh:nobody@no-such-host.invalid")
        assert "no-such-host.invalid" in str(info.value)

    asyncio.run(scenario())
