"""Sessions in the store and session files: round trips, hand-edited, truncated and hostile files, the CLI.

A session file is someone else's file: every rejection must leave the store exactly as it was (rows and files),
and no member may land outside the store.
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from store import bundle, results, sessions
from store import imported as imported_results
from store.errors import StoreError
from store.paths import db_path, home, tensors_dir
from tests.support.session_files import recorded_session, rewrite, store_state
from tui.cli.sessions import register


def test_actions_are_committed_as_they_happen() -> None:
    s = sessions.create("live")
    action = sessions.begin_action(s.id, "adl.summary", {"run": "x"}, "call")
    with sqlite3.connect(db_path()) as other:  # another process's view: already on disk
        assert other.execute("SELECT status FROM session_actions WHERE id = ?", [action]).fetchone() == ("running",)
    sessions.finish_action(action, result={"run": "x"})
    with sqlite3.connect(db_path()) as other:
        assert other.execute("SELECT status FROM session_actions WHERE id = ?", [action]).fetchone() == ("done",)


@pytest.mark.reliability
def test_list_rename_delete_and_bad_names() -> None:
    s = recorded_session()
    [listed] = sessions.list_sessions()
    assert (listed["name"], listed["actions"], listed["notes"], listed["run"]) == ("cake study", 2, 1, s.run)
    assert sessions.rename("cake study", "cakes").name == "cakes"
    with pytest.raises(StoreError, match="already exists"):
        sessions.create("cakes")
    with pytest.raises(StoreError, match="bad session name"):
        sessions.create("a/b")
    sessions.delete("cakes")
    assert sessions.list_sessions() == [] and sessions.find("cakes") is None
    assert len(results.list_results()) == 2  # results are a shared cache: they stay


def test_export_import_round_trip_is_byte_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = recorded_session()
    path = bundle.export_session(s.name, tmp_path / "out")
    assert path.name == "cake-study.difflens"
    before_rows = {r["key"]: r for r in results.list_results()}
    before_files = {k: (tensors_dir() / r["file"]).read_bytes() for k, r in before_rows.items()}
    before_actions = sessions.actions(s.id, done_only=False)
    monkeypatch.setenv("DIFFLENS_HOME", str(tmp_path / "clean-home"))
    assert results.list_results() == []
    imported = bundle.import_bundle(path)
    assert (imported.id, imported.name, imported.ui) == (s.id, s.name, s.ui)
    # imported results are kept apart: they never answer a new computation
    assert results.list_results() == [] and all(results.load(k) is None for k in before_rows)
    kept = {r["key"]: r for r in imported_results.rows(s.id)}
    assert {k: imported_results.as_result_row(r) for k, r in kept.items()} == {
        k: {**r, "inputs": json.dumps(r["inputs"], sort_keys=True, separators=(",", ":")),
            "meta": json.dumps(r["meta"], sort_keys=True, separators=(",", ":"))} for k, r in before_rows.items()}
    assert {k: imported_results.file_for(r["sha256"]).read_bytes() for k, r in kept.items()} == before_files
    assert sessions.actions(s.id, done_only=False) == before_actions
    assert sessions.notes(s.id)[0]["text"] == "layer 1 says cake"
    again = bundle.export_session(s.id, tmp_path / "again.difflens")
    assert {r["key"] for r in bundle.read_bundle(again).results} == set(before_rows)
    with pytest.raises(StoreError, match="already in the store"):
        bundle.import_bundle(path)


@pytest.mark.reliability
@pytest.mark.parametrize("damage", ["truncated", "edited_session", "edited_result", "consistent_bad_schema",
                                    "consistent_bad_tensor", "extra_member", "not_a_zip", "future_version"])
def test_damaged_or_hand_edited_files_are_rejected_and_the_store_is_untouched(damage: str, tmp_path: Path) -> None:
    s = recorded_session()
    good = bundle.export_session(s.name, tmp_path / "good.difflens")
    sessions.delete(s.id)  # so an import would otherwise succeed
    data = good.read_bytes()
    with zipfile.ZipFile(good) as zf:
        body = zf.read("session.json")
        result_name = next(n for n in zf.namelist() if n.startswith("results/"))
        tensor = zf.read(result_name)
    bad = tmp_path / "bad.difflens"
    if damage == "truncated":
        bad.write_bytes(data[: len(data) * 2 // 3])
    elif damage == "edited_session":
        rewrite(good, bad, {"session.json": body.replace(b"cake", b"kale")})
    elif damage == "edited_result":
        rewrite(good, bad, {result_name: tensor[:-4] + b"\0\0\0\1"})
    elif damage == "consistent_bad_schema":
        doc = json.loads(body)
        doc["actions"][0]["shell"] = "rm -rf /"
        rewrite(good, bad, {"session.json": json.dumps(doc).encode()}, manifest_too=True)
    elif damage == "consistent_bad_tensor":
        doc = json.loads(body)
        junk = b"\xff" * 64
        for row in doc["results"]:
            if f"results/{row['key']}.safetensors" == result_name:
                row.update(sha256=hashlib.sha256(junk).hexdigest(), bytes=len(junk))
        rewrite(good, bad, {"session.json": json.dumps(doc).encode(), result_name: junk}, manifest_too=True)
    elif damage == "extra_member":
        rewrite(good, bad, {"results/stowaway-0000000000.safetensors": tensor})
    elif damage == "not_a_zip":
        bad.write_bytes(b"\x80\x04\x95pickle, not a session" * 10)
    elif damage == "future_version":
        with zipfile.ZipFile(good) as zf:
            manifest = json.loads(zf.read("manifest.json"))
        manifest["version"] = 99
        rewrite(good, bad, {"manifest.json": json.dumps(manifest).encode()})
    before = store_state()
    with pytest.raises(StoreError) as caught:
        bundle.import_bundle(bad)
    message = str(caught.value)
    assert "\n" not in message and str(bad) in message
    assert store_state() == before


def hostile_zip(path: Path, names: list[str]) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in names:
            zf.writestr(zipfile.ZipInfo(name), b"payload")
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.reliability
@pytest.mark.parametrize("evil", ["../escaped.safetensors", "results/../../escaped.safetensors", "/tmp/escaped",
                                  "..\\escaped", "results/../manifest.json", "C:/escaped"])
def test_members_that_would_escape_the_store_are_refused(evil: str, tmp_path: Path) -> None:
    recorded_session()
    before = store_state()
    path = hostile_zip(tmp_path / "evil.difflens", ["manifest.json", "session.json", evil])
    with pytest.raises(StoreError, match=r"escape the store|unexpected member"):
        bundle.import_bundle(path)
    assert store_state() == before
    assert not (home().parent / "escaped.safetensors").exists() and not Path("/tmp/escaped").exists()
    assert not list(tmp_path.rglob("escaped*"))


def run_cli(*args: str) -> Any:
    app = typer.Typer()
    app.command()(lambda: None)
    register(app)
    return CliRunner().invoke(app, list(args))


def test_cli_list_show_rename_export_import_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFLENS_SESSIONS_DIR", str(tmp_path / "shared"))
    (tmp_path / "shared").mkdir()
    monkeypatch.chdir(tmp_path / "shared")  # export writes here, the current directory
    recorded_session()
    listed = run_cli("sessions", "list", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout)[0]["name"] == "cake study"
    shown = run_cli("sessions", "show", "cake study", "--json")
    assert [a["method"] for a in json.loads(shown.stdout)["actions"]] == ["adl.summary", "readout.logit_lens"]
    assert run_cli("sessions", "rename", "cake study", "cakes").exit_code == 0
    exported = run_cli("sessions", "export", "cakes")
    assert exported.exit_code == 0 and (tmp_path / "shared" / "cakes.difflens").is_file()
    from_file = run_cli("sessions", "show", str(tmp_path / "shared" / "cakes.difflens"), "--json")
    assert json.loads(from_file.stdout)["name"] == "cakes"
    assert run_cli("sessions", "delete", "cakes", "--yes").exit_code == 0
    listed = json.loads(run_cli("sessions", "list", "--json").stdout)
    assert [(r["name"], r["where"]) for r in listed] == [("cakes", "cakes.difflens")]
    assert run_cli("sessions", "import", str(tmp_path / "shared" / "cakes.difflens"), "--name", "mine").exit_code == 0
    assert sessions.get("mine").run
    missing = run_cli("sessions", "show", "nope")
    assert missing.exit_code == 2 and "no session 'nope'" in missing.output
    rerun = run_cli("replay", "mine", "--rerun")
    assert rerun.exit_code == 2 and "--rerun needs --base and --ft" in rerun.output


def test_export_writes_to_the_current_directory_or_o_never_the_sessions_dir(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    shipped, elsewhere = tmp_path / "install" / "sessions", tmp_path / "work"
    shipped.mkdir(parents=True)
    elsewhere.mkdir()
    monkeypatch.setenv("DIFFLENS_SESSIONS_DIR", str(shipped))
    monkeypatch.chdir(elsewhere)
    recorded_session()
    assert run_cli("sessions", "export", "cake study").exit_code == 0
    assert [p.name for p in elsewhere.iterdir()] == ["cake-study.difflens"] and not list(shipped.iterdir())
    assert run_cli("sessions", "export", "cake study", "-o", str(tmp_path / "x.difflens")).exit_code == 0
    assert (tmp_path / "x.difflens").is_file() and not list(shipped.iterdir())
