"""Session files from strangers (issue 23): no planted result is served, no bad row breaks the store, and a
bundle that claims or expands to gigabytes costs a bounded amount of memory and leaves nothing behind.

Every hostile file here is built by the test: a recorded session exported, then edited with a manifest to match
(so only the new checks can catch it), or a zip written by hand whose headers lie.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from store import bundle, imported, results, sessions
from store.errors import StoreError
from store.paths import db_path, tensors_dir
from tests.support.engine_helpers import ROOT
from tests.support.session_files import (
    exported_session,
    recorded_session,
    store_state,
    with_body,
)

pytestmark = pytest.mark.reliability

CLI = [sys.executable, "-c", "from tui.cli import main; main()"]


NESTED = {  # (row, column, hostile value): each a string column holding JSON, or a field of the wrong kind
    "ui_not_json": ("session", "ui", "{not json"),
    "ui_a_list": ("session", "ui", "[1, 2]"),
    "params_truncated": ("action", "params", '{"run": '),
    "result_a_list": ("action", "result", "[]"),
    "events_an_object": ("action", "events", "{}"),
    "refs_a_path": ("action", "refs", '["../../etc/passwd"]'),
    "refs_not_a_list": ("action", "refs", '"adl-x"'),
    "cell_nan": ("note", "cell", '{"x": NaN}'),
    "meta_a_list": ("result", "meta", "[]"),
    "inputs_empty": ("result", "inputs", ""),
    "meta_deep": ("result", "meta", '{"a": ' + "[" * 5000 + "]" * 5000 + "}"),
    "status_unknown": ("action", "status", "pwned"),
    "seq_repeated": ("action", "seq", None),
}


@pytest.mark.parametrize("case", sorted(NESTED))
def test_hostile_nested_values_are_refused_and_the_store_is_untouched(case: str, tmp_path: Path) -> None:
    good, body = exported_session(tmp_path)
    where, column, value = NESTED[case]
    row = {"session": body["session"], "action": body["actions"][0], "note": body["notes"][0],
           "result": body["results"][0]}[where]
    if case == "seq_repeated":
        body["actions"][1]["seq"] = body["actions"][0]["seq"]
    else:
        row[column] = value
    bad = with_body(good, tmp_path / "bad.difflens", body)
    before = store_state()
    with pytest.raises(StoreError, match="not a valid difflens session file") as caught:
        bundle.import_bundle(bad)
    assert "\n" not in str(caught.value)
    assert store_state() == before


def test_a_session_json_nested_200000_deep_is_refused_in_one_line(tmp_path: Path) -> None:
    good, _ = exported_session(tmp_path)
    bad = with_body(good, tmp_path / "deep.difflens", "[" * 200_000 + "]" * 200_000)
    before = store_state()
    with pytest.raises(StoreError, match="nested deeper"):
        bundle.import_bundle(bad)
    assert store_state() == before


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**dict(os.environ), "DIFFLENS_HOME": str(home), "PYTHONPATH": str(ROOT),
           "DIFFLENS_SESSIONS_DIR": str(home / "no-files")}
    return subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_readers_skip_bad_rows_with_a_warning_and_delete_always_works(isolated_home: Path, tmp_path: Path) -> None:
    """Rows that got in some other way (an older difflens, a hand-edited database) never break a listing."""
    s = recorded_session()
    results.save("adl", {"other": 1}, {"x": np.zeros(2, np.float32)}, {"n_layers": 1})
    with sqlite3.connect(db_path()) as conn:
        conn.execute("UPDATE sessions SET ui = '[oops' WHERE id = ?", [s.id])
        conn.execute("UPDATE session_actions SET params = '{' WHERE session = ? AND seq = 1", [s.id])
        conn.execute("UPDATE session_notes SET cell = 'nan' WHERE session = ?", [s.id])
        conn.execute("UPDATE results SET meta = '[1' WHERE key = ?", [s.run])
    assert [r["key"] for r in results.list_results("adl")] != [] and results.load(s.run) is None
    for args in (("sessions", "list"), ("sessions", "show", s.name), ("sessions", "show", s.name, "--json"),
                 ("sessions", "export", s.name, "-o", str(tmp_path / "out.difflens"))):
        proc = _cli(*args, home=isolated_home)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        if args[1] != "list":
            assert "warning: skipped" in proc.stderr
    exported = bundle.read_bundle(tmp_path / "out.difflens")
    assert [a["seq"] for a in exported.actions] == [2, 3]  # the unreadable action is left out, not fatal
    deleted = _cli("sessions", "delete", s.name, "--yes", home=isolated_home)
    assert deleted.returncode == 0 and "Traceback" not in deleted.stderr
    assert sessions.find(s.id) is None


def _forged_lens_session(tmp_path: Path, key_inputs: dict[str, Any]) -> Path:
    """A session file carrying a result under the key a real lens computation would use, with forged tensors
    and payload, every hash made consistent."""
    forged = results.save("lens.kl", key_inputs, {"empty": np.full(3, 666, np.float32)},
                          {"payload": {"forged": True}})
    s = sessions.create("planted")
    action = sessions.begin_action(s.id, "lens.kl", {"texts": ["x"]}, "job")
    sessions.finish_action(action, result={"result": forged.key, "forged": True})
    path = bundle.export_session(s.id, tmp_path / "planted.difflens")
    sessions.delete(s.id)
    with sqlite3.connect(db_path()) as conn:  # the stranger's machine had it; ours does not
        conn.execute("DELETE FROM results WHERE key = ?", [forged.key])
    results.file_for(forged.key).unlink()
    return path


def test_an_imported_result_never_answers_a_new_computation(tmp_path: Path) -> None:
    from engine.lenses.lens_cache import cached

    inputs = {"pair": {"base": "b", "ft": "f"}, "texts": "abc", "layer": 1}
    path = _forged_lens_session(tmp_path, inputs)
    session = bundle.import_bundle(path)
    key = results.key_for("lens.kl", inputs)
    assert imported.row(key, session.id) is not None  # kept for the session that carried it
    assert results.lookup("lens.kl", inputs) is None and results.row(key) is None
    payload, got, was_cached = cached("lens.kl", inputs, lambda: ({"honest": True}, {}))
    assert (payload, got, was_cached) == ({"honest": True}, key, False)
    assert results.lookup("lens.kl", inputs).meta["payload"] == {"honest": True}  # type: ignore[union-attr]
    from tui.sessions.source import load_source

    assert load_source("planted").actions[0]["result"]["forged"] is True  # replay of that session still works
    again = bundle.export_session("planted", tmp_path / "again.difflens")
    assert bundle.read_bundle(again).results[0]["sha256"] == imported.row(key, session.id)["sha256"]  # type: ignore[index]
    sessions.delete("planted")
    assert imported.rows(session.id) == [] and list((tensors_dir() / "imported").iterdir()) == []


# ---- bounded work: zips written by hand, so their headers can lie ----

def _zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip of (name, raw deflate data, crc, claimed uncompressed size, method) with no size checks at all."""
    out, central = bytearray(), bytearray()
    for name, data, crc, size, method in members:
        offset = len(out)
        encoded = name.encode()
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(encoded), 0)
        out += encoded + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(data), size,
                               len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    start = len(out)
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), start, 0)
    return bytes(out)


def _deflated_tensor(size: int) -> tuple[bytes, int]:
    """Raw deflate of a valid `size`-byte safetensors file of zeros (one U8 tensor; about 1/1000 of it) and its
    CRC, built in 16 MiB steps."""
    body = size - 8 - 128
    header = json.dumps({"x": {"dtype": "U8", "shape": [body], "data_offsets": [0, body]}}).encode().ljust(128)
    comp, block = zlib.compressobj(1, zlib.DEFLATED, -15), bytes(16 << 20)
    head = len(header).to_bytes(8, "little") + header
    parts, crc = [comp.compress(head)], zlib.crc32(head)
    for done in range(0, body, len(block)):
        chunk = block[: min(len(block), body - done)]
        crc = zlib.crc32(chunk, crc)
        parts.append(comp.compress(chunk))
    parts.append(comp.flush())
    return b"".join(parts), crc


def _bomb(tmp_path: Path, kind: str) -> Path:
    """A session file whose result member expands to a valid 900 MB safetensors file (`honest`: the headers say
    so, only the hash is wrong, so all of it is streamed),
    claims 3 GB (`claims`), or claims 1 KiB while expanding to 900 MB (`lies`)."""
    _, body = exported_session(tmp_path)
    result = body["results"][0]
    body["results"] = [result]
    name = f"results/{result['key']}.safetensors"
    big = 900 << 20
    data, crc = _deflated_tensor(big) if kind != "claims" else (zlib.compress(b"x")[2:-4], zlib.crc32(b"x"))
    claimed = {"honest": big, "claims": 3 << 30, "lies": 1024}[kind]
    result.update(bytes=claimed, sha256=hashlib.sha256(b"claimed").hexdigest())
    session_json = json.dumps(body).encode()
    manifest = {"format": "difflens-session", "version": 1, "files": {
        "session.json": {"sha256": hashlib.sha256(session_json).hexdigest(), "bytes": len(session_json)},
        name: {"sha256": result["sha256"], "bytes": claimed}}}
    manifest_json = json.dumps(manifest).encode()
    stored = [(n, zlib.compress(d)[2:-4], zlib.crc32(d), len(d), 8)
              for n, d in (("manifest.json", manifest_json), ("session.json", session_json))]
    path = tmp_path / f"{kind}.difflens"
    path.write_bytes(_zip([*stored, (name, data, crc, claimed, 8)]))
    return path


_MEASURE = r"""
import json, re, sys
from pathlib import Path
from store import bundle
from store.errors import StoreError
try:
    bundle.import_bundle(Path(sys.argv[1]))
    outcome = "imported"
except StoreError as exc:
    outcome = str(exc)
peak_kb = int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"outcome": outcome, "peak_mb": peak_kb / 1024}))
"""


@pytest.mark.parametrize("kind", ["honest", "claims", "lies"])
def test_a_bundle_that_expands_to_gigabytes_is_refused_in_bounded_memory_and_leaves_nothing(
        kind: str, tmp_path: Path, isolated_home: Path) -> None:
    path = _bomb(tmp_path, kind)
    assert path.stat().st_size < 4 << 20
    before = store_state()
    env = {**dict(os.environ), "PYTHONPATH": str(ROOT), "DIFFLENS_HOME": str(isolated_home)}
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert "not a valid difflens session file" in report["outcome"]
    expected = {"honest": "does not match its sha256", "claims": "claim to be larger", "lies": "Bad CRC"}[kind]
    assert expected in report["outcome"]
    assert report["peak_mb"] < 300, report
    assert store_state() == before
    assert not [p for p in (tensors_dir() / "imported").rglob("*") if p.is_file()]  # no staged or placed file


def test_listing_session_files_reads_no_result_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sessions list` reads each file's manifest and session.json, not its results (a bomb lists quickly)."""
    from tui.sessions.files import saved_sessions

    shared = tmp_path / "shared"
    shared.mkdir()
    _bomb(tmp_path, "honest").rename(shared / "big.difflens")
    monkeypatch.setenv("DIFFLENS_SESSIONS_DIR", str(shared))
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: Any, name: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    monkeypatch.setattr("zipfile.ZipFile.open", spy)
    [listed] = saved_sessions()
    assert listed["name"] == "cake study" and "error" not in listed
    assert sorted(opened) == ["manifest.json", "session.json"]


# ---- a stored request never decides what runs ----

EVIL_CODE = '''import os
open(os.environ["DIFFLENS_TEST_MARKER"], "w").write("custom code ran")
from transformers import LlamaConfig, LlamaForCausalLM


class EvilConfig(LlamaConfig):
    pass


class EvilModel(LlamaForCausalLM):
    config_class = EvilConfig
'''


def _with_custom_code(src: Path, dst: Path) -> Path:
    """A copy of a tiny checkpoint whose config asks for custom code that leaves a marker when it runs."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    module = f"evil_{uuid.uuid4().hex}"  # a fresh module each time: Python runs a module's code only once
    config["auto_map"] = {"AutoConfig": f"{module}.EvilConfig", "AutoModelForCausalLM": f"{module}.EvilModel"}
    (dst / "config.json").write_text(json.dumps(config))
    (dst / f"{module}.py").write_text(EVIL_CODE)
    return dst


@pytest.fixture
def planted_run(tmp_path: Path, tiny_dir: Path, tiny_ft_dir: Path,
                monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path, Path]:
    """(run id, custom-code model dir, marker): a run computed here, whose stored request was then edited (as an
    older difflens's import or a hand-edited store would leave it) to ask for the models' custom code."""
    from engine.adl.compute import compute_adl
    from engine.adl.request import AdlRequest
    from tests.support.engine_helpers import write_corpus

    base = _with_custom_code(tiny_dir, tmp_path / "custom-base")
    ft = _with_custom_code(tiny_ft_dir, tmp_path / "custom-ft")
    marker = tmp_path / "marker"
    monkeypatch.setenv("DIFFLENS_TEST_MARKER", str(marker))
    request = AdlRequest(base=str(base), ft=str(ft), corpus=str(write_corpus(tmp_path / "c.txt")), n=4, k=2,
                         device="cpu", dtype="float32")
    run = compute_adl(request).run
    with sqlite3.connect(db_path()) as conn:
        meta = json.loads(conn.execute("SELECT meta FROM results WHERE key = ?", [run]).fetchone()[0])
        meta["request"]["trust_remote_code"] = True
        conn.execute("UPDATE results SET meta = ? WHERE key = ?", [json.dumps(meta), run])
    return run, ft, marker


PATHS = {  # every op that loads models from a stored run's request, with the params the CLI/TUI send
    "tokens (readout.lens_grid)": ("readout.lens_grid", {}),
    "tokens --layer --pos (readout.logit_lens)": ("readout.logit_lens", {"layer": 1, "pos": 0}),
    "steer (steer.generate)": ("steer.generate", {"strengths": [1.0], "prompts": ["a"], "max_new_tokens": 2}),
    "kl --run (lens.kl)": ("lens.kl", {"texts": ["the cat sat"], "max_tokens": 8}),
    "causal --run (lens.causal)": ("lens.causal", {"ft_corpus": "generic:", "n": 2, "max_tokens": 8}),
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_stored_request_never_turns_on_custom_model_code(path: str, planted_run: tuple[str, Path, Path]) -> None:
    from engine.errors import ActionableError
    from engine.jobs import JobContext
    from engine.ops import load_all

    run, _, marker = planted_run
    method, params = PATHS[path]
    with contextlib.suppress(ActionableError):  # refusing is fine; running the stored request's custom code is not
        load_all()[method].fn({"run": run, **params}, JobContext())
    assert not marker.exists()


def test_custom_code_runs_only_when_the_user_asks_now(planted_run: tuple[str, Path, Path]) -> None:
    from engine.adl.runs import load_run
    from engine.jobs import JobContext
    from engine.ops import load_all

    run, _, marker = planted_run
    assert load_run(run).request.trust_remote_code is False
    with contextlib.suppress(Exception):
        load_all()["readout.logit_lens"].fn({"run": run, "layer": 1, "pos": 0, "trust_remote_code": True},
                                             JobContext())
    assert marker.exists()


def test_a_rerun_takes_models_code_and_llm_from_the_user_not_the_session(planted_run: tuple[str, Path, Path]) -> None:
    from tui.sessions.rerun import counterpart_run_params, retarget
    from tui.sessions.source import SessionSource

    run, model, _ = planted_run
    source = SessionSource(id="s-x", name="x", run=run, base="", ft="", ui={}, actions=[])
    old, params = counterpart_run_params(source, "my-base", "my-ft", None)
    assert old == run and (params["base"], params["ft"]) == ("my-base", "my-ft")
    assert "trust_remote_code" not in params and "adapter" not in params
    asked = retarget({"run": run, "base": str(model), "ft": str(model), "adapter": "/x", "trust_remote_code": True,
                      "llm": "local:/evil", "grader_llm": "local:/evil", "texts": ["a"]}, "b", "f", None, False)
    assert asked == {"run": run, "base": "b", "ft": "f", "texts": ["a"]}
    assert retarget({"run": run}, "b", "f", None, True) == {"run": run, "trust_remote_code": True}
