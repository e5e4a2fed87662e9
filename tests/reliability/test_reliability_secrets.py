"""Secrets through a real background engine: the API key comes from the engine's environment or its 0600
config file only, and after an agent run against the scripted OpenAI-compatible server (which echoes the key
back in its replies) the key is nowhere — not in DIFFLENS_HOME (store, sessions, transcripts, any HTML), not
in the engine's log or runtime files, not in what the client received. The in-process checks of the same
(transcript, log records, streamed tokens) are in test_agent.py."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from store import bundle, results, sessions
from tests.support.agent_fixtures import CAKE_ENV, PROMPT
from tests.support.agent_llm_server import ScriptedLLMServer
from tests.support.engine_helpers import ROOT, engine_cli, engine_env, short_dir
from tui.client import connect

pytestmark = pytest.mark.reliability

# Not shaped like an OpenAI key, so only the configured-secret redaction (not the key-shaped regex) hides it.
CANARY = "canary-difflens-reliability-7f3a9c1e5b2d4e6f"


def script() -> list[dict[str, Any]]:
    return [{"status": 429},
            {"text": f"Echoing the key {CANARY} back.", "tool_calls": [
                ("hypothesis_tracking", {"action": "add", "hypothesis": f"cakes {CANARY}"}),
                ("ask_model", {"prompts": [PROMPT]})]},
            {"text": f"Done.\nFINAL(description: \"Bakes cakes hot. {CANARY}\")"},
            {"text": f"Right topic. {CANARY}\nQUOTE: \"Bakes cakes hot\"\nSCORE: 5"}]


def agent_on_a_started_engine(sock: Path, env: dict[str, str], params: dict[str, Any],
                              events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Start an engine on `sock`, run one agent job through a client of it, and stop the engine whatever happened."""
    assert engine_cli("start", "--socket", str(sock), env=env).returncode == 0

    async def run_agent() -> dict[str, Any]:
        client = await connect(f"unix:{sock}")
        try:
            return await client.run_job("agent.run", params, events.append if events is not None else None)
        finally:
            await client.close()

    try:
        return asyncio.run(run_agent())
    finally:
        engine_cli("stop", "--socket", str(sock), env=env)


def leaks(roots: list[Path], skip: Path | None = None) -> list[str]:
    """Every file under `roots` that holds the canary (or its middle third, in case it was cut)."""
    needles = [CANARY.encode(), CANARY[len(CANARY) // 3: 2 * len(CANARY) // 3].encode()]
    return [str(p) for root in roots for p in root.rglob("*")
            if p.is_file() and p != skip and any(n in p.read_bytes() for n in needles)]


@pytest.mark.parametrize("source", ["environment", "config-file"])
def test_the_key_never_reaches_the_store_logs_or_clients(source: str) -> None:
    with short_dir() as runtime, ScriptedLLMServer(script()) as server:
        env = engine_env(runtime, DIFFLENS_LLM_BASE_URL=server.base_url)
        for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DIFFLENS_LLM_API_KEY", "DIFFLENS_LLM_MODEL"):
            env.pop(name, None)
        home = Path(env["DIFFLENS_HOME"])
        config = home / "config.toml"
        if source == "environment":
            env["OPENAI_API_KEY"] = CANARY
        else:
            home.mkdir(parents=True)
            config.write_text(f'[llm]\nmodel = "openai:scripted"\napi_key = "{CANARY}"\n')
            config.chmod(0o600)
        events: list[dict[str, Any]] = []
        result = agent_on_a_started_engine(runtime / "engine.sock", env, {
            "environment": CAKE_ENV, "llm": "openai:scripted", "grade": True,
            "organism_description": "Bakes cakes at 450F with frozen butter.", "organism_type": "sdf"}, events)
        assert server.requests and all(r["headers"]["authorization"] == f"Bearer {CANARY}" for r in server.requests)
        [run] = result["runs"]
        assert run["status"] == "done" and run["grade"]["score"] == 5
        assert "[redacted]" in Path(run["path"]).read_text()
        assert (runtime / "engine.log").stat().st_size > 0
        assert leaks([home, runtime], skip=config) == []
        assert CANARY not in json.dumps(result) + json.dumps(events)


URL_PASSWORD, URL_KEY = "canary-url-password-51c0ffee", "canary-url-apikey-8d2e4b6a"
SECRET_URL = f"http://someone:{URL_PASSWORD}@127.0.0.1:9/v1?api-key={URL_KEY}&region=eu"


def test_credentials_inside_the_llm_base_url_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.llm.config import resolve_config
    from engine.protocol.redact import Redactor, url_credentials

    monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", SECRET_URL)
    config = resolve_config("openai:scripted")
    assert URL_PASSWORD not in config.label() and URL_KEY not in config.label() and "region=eu" in config.label()
    assert {URL_PASSWORD, URL_KEY} <= set(config.secrets)
    echoed = f"connect to {SECRET_URL} failed; the password was {URL_PASSWORD}"
    assert URL_PASSWORD not in Redactor(config.secrets).text(echoed)
    assert url_credentials("https://u:p@h/x?token=abc&Api_Key=def&q=1") == (
        "https://[redacted]@h/x?token=[redacted]&Api_Key=[redacted]&q=1")


def test_an_agent_failing_on_a_url_with_credentials_leaks_them_nowhere(isolated_home: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing listens on the URL: the error the user sees, the stored transcript and the store hold no secret."""
    from engine.errors import ActionableError
    from engine.jobs import JobContext
    from engine.ops import load_all
    from engine.server.failures import error_for

    isolated_home.mkdir(parents=True, exist_ok=True)
    config = isolated_home / "config.toml"
    config.write_text("[llm]\nmax_retries = 0\ntimeout_s = 5\n")
    config.chmod(0o600)
    monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", SECRET_URL)
    monkeypatch.setenv("OPENAI_API_KEY", "not-a-canary-key")
    events: list[dict[str, Any]] = []
    try:
        outcome: Any = load_all()["agent.run"].fn({"environment": CAKE_ENV, "llm": "openai:scripted"},
                                                  JobContext(emit=events.append))
    except ActionableError as exc:
        outcome = error_for(exc)
    shown = json.dumps(outcome) + json.dumps(events)
    assert URL_PASSWORD not in shown and URL_KEY not in shown
    for path in isolated_home.rglob("*"):
        if path.is_file() and path != config:
            data = path.read_bytes()
            assert URL_PASSWORD.encode() not in data and URL_KEY.encode() not in data, path


def test_session_files_hold_no_local_home_path(tmp_path: Path, isolated_home: Path) -> None:
    """The exporter writes `$DIFFLENS_HOME/...` for store files; the shipped demo session holds no home path."""
    s = sessions.create("paths")
    saved = results.save("adl", {"p": 1}, {"x": np.zeros(2, np.float32)}, {})
    action = sessions.begin_action(s.id, "adl.compute", {"base": "b", "ft": "f"}, "job")
    sessions.finish_action(action, result={"run": saved.key, "file": str(results.file_for(saved.key))})
    exported = bundle.export_session(s.id, tmp_path / "paths.difflens")
    shipped = Path(__file__).resolve().parents[2] / "sessions" / "demo.difflens"
    for path in (exported, shipped):
        with zipfile.ZipFile(path) as zf:
            text = b"".join(zf.read(n) for n in zf.namelist() if n.endswith(".json"))
        for home in (str(isolated_home), str(Path.home()), "/root/", "/home/"):
            assert home.encode() not in text, (path, home)
    [answer] = bundle.read_bundle(exported).actions
    assert json.loads(answer["result"])["file"] == f"$DIFFLENS_HOME/tensors/{saved.key}.safetensors"


BASIC = base64.b64encode(f"someone:{URL_PASSWORD}".encode()).decode()


def test_credentials_in_the_base_url_never_authenticate_or_reach_the_engine_log() -> None:
    """The URL's user:password is not sent (the configured key authenticates); httpx and the SDK log every
    request (DEBUG here: headers and options too), and an echoed `Basic` value comes back in a reply: the
    engine's log holds none of the key, the URL's password or api-key, or the Basic value."""
    echo = [{"text": f"Your header was Basic {BASIC} and api-key={URL_KEY}.\nFINAL(description: \"cakes\")"}]
    with short_dir() as runtime, ScriptedLLMServer(echo) as server:
        url = server.base_url.replace("http://", f"http://someone:{URL_PASSWORD}@") + f"?api-key={URL_KEY}"
        env = engine_env(runtime, DIFFLENS_LLM_BASE_URL=url, OPENAI_API_KEY=CANARY, DIFFLENS_LOG_LEVEL="DEBUG")
        for name in ("ANTHROPIC_API_KEY", "DIFFLENS_LLM_API_KEY", "DIFFLENS_LLM_MODEL"):
            env.pop(name, None)
        result = agent_on_a_started_engine(runtime / "engine.sock", env,
                                           {"environment": CAKE_ENV, "llm": "openai:scripted"})
        assert server.requests and all(r["headers"]["authorization"] == f"Bearer {CANARY}" for r in server.requests)
        assert all(r["path"] == f"/v1/chat/completions?api-key={URL_KEY}" for r in server.requests)
        log = (runtime / "engine.log").read_text()
        assert "HTTP Request" in log  # the client's own request line was logged, redacted
        for secret in (CANARY, URL_PASSWORD, URL_KEY, BASIC):
            assert secret not in log and secret not in json.dumps(result), secret
        assert leaks([Path(env["DIFFLENS_HOME"]), runtime]) == []


LIBRARY_LOGS = """\
import io, logging
from engine.protocol.redact import redact_logs, remember
redact_logs()
remember(("canary-remembered-0a1b2c",))
stream = io.StringIO()
lib = logging.getLogger("some.library")
lib.addHandler(logging.StreamHandler(stream))    # a handler of the library's own, added afterwards
lib.setLevel(logging.DEBUG)
lib.info("HTTP Request: POST %s", "http://someone:hunter2-pw@host/v1/chat?api-key=k-123456&x=1")
lib.debug("Request options: %r", {"headers": {"Authorization": "Basic c29tZW9uZTpodW50ZXIyLXB3"}})
lib.warning("retrying %s", {"authorization": "Bearer tok-abcdef-123456"})
try:
    raise RuntimeError("upstream said canary-remembered-0a1b2c")
except RuntimeError:
    lib.exception("call failed")
print(stream.getvalue())
"""


def test_every_log_record_is_redacted_whatever_library_logs_it() -> None:
    done = subprocess.run([sys.executable, "-P", "-c", LIBRARY_LOGS], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    for secret in ("hunter2-pw", "k-123456", "c29tZW9uZTpodW50ZXIyLXB3", "tok-abcdef-123456",
                   "canary-remembered-0a1b2c"):
        assert secret not in done.stdout, (secret, done.stdout)
    assert "x=1" in done.stdout and "call failed" in done.stdout and "RuntimeError" in done.stdout


def test_the_client_gets_the_base_url_without_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.llm.config import resolve_config

    monkeypatch.setenv("DIFFLENS_LLM_BASE_URL", SECRET_URL)
    config = resolve_config("openai:scripted")
    assert config.client_url == "http://127.0.0.1:9/v1"
    assert config.client_query == {"api-key": URL_KEY, "region": "eu"}
