"""Small failures of issue 31, each a class: where a traceback or a raw engine error stood, one line naming the fix.

Bundles with text or numbers no store can hold, zips claiming hundreds of thousands of members, error lines that
quote megabytes, a log file of the user's, config numbers and providers, spreadsheets' CSV, negative indices and
64-bit overflows, a runtime dir that is a file, names with invisible controls, a store that cannot be written.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from engine.errors import UserError
from engine.protocol import methods, paths
from engine.protocol.params import ParamsError
from engine.server import daemon
from store import bundle, jsonvalue, sessions
from store.db import connect
from store.errors import MAX_PROBLEM_CHARS, StoreError
from tests.support.session_files import exported_session, store_state, with_body

pytestmark = pytest.mark.reliability


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb", 2**70, -(2**64), {"\udc00": 1}],
                         ids=["lone-high", "lone-low", "2**70", "-2**64", "surrogate-key"])
@pytest.mark.parametrize("where", ["note_text", "action_params", "result_meta"])
def test_bundle_text_and_numbers_no_store_can_hold_are_refused_and_the_store_is_untouched(
        value: object, where: str, tmp_path: Path) -> None:
    good, body = exported_session(tmp_path)
    if where == "note_text":
        column = {str: "text", int: "seq", dict: "cell"}[type(value)]
        body["notes"][0][column] = json.dumps(value, ensure_ascii=True) if column == "cell" else value
    elif where == "action_params":
        body["actions"][0]["params"] = json.dumps({"run": "x", "n": value}, ensure_ascii=True)
    else:
        body["results"][0]["meta"] = json.dumps({"x": value}, ensure_ascii=True)
    hostile = with_body(good, tmp_path / "hostile.difflens", json.dumps(body, ensure_ascii=True))
    before = store_state()
    with pytest.raises(StoreError, match="not a valid difflens session file") as caught:
        bundle.import_bundle(hostile)
    assert "\n" not in str(caught.value) and store_state() == before


@pytest.mark.parametrize("text", ['{"a": 1180591620717411303424}', '["\\ud83d"]', '{"\\udfff": 0}'])
def test_json_from_outside_refuses_what_sqlite_and_terminals_cannot_hold(text: str) -> None:
    with pytest.raises(jsonvalue.JsonValueError):
        jsonvalue.loads(text)
    assert jsonvalue.loads('[9223372036854775807, "\\ud83d\\ude00"]') == [2**63 - 1, "😀"]


def test_a_zip_claiming_more_members_than_any_session_is_refused_before_they_are_read(tmp_path: Path) -> None:
    path = tmp_path / "many.difflens"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(25_000):
            zf.writestr(f"results/k{i:07d}.safetensors", b"")
    connect()  # the store's tables exist, as in any store that imports
    before = store_state()
    with pytest.raises(StoreError, match=r"claims 25,000 members") as caught:
        bundle.import_bundle(path)
    assert len(str(caught.value)) < 2 * MAX_PROBLEM_CHARS and store_state() == before


def test_an_error_quoting_megabytes_is_one_bounded_line() -> None:
    error = StoreError("members disagree: " + ", ".join(f"results/k{i}.safetensors" for i in range(300_000)),
                       "ask for a fresh export\nnothing was imported")
    assert len(str(error)) < 2 * MAX_PROBLEM_CHARS + 100 and "\n" not in str(error)
    assert str(error).startswith("members disagree: results/k0.safetensors")


def test_the_engine_never_appends_its_log_to_a_file_it_did_not_create(tmp_path: Path) -> None:
    sock = tmp_path / "engine.sock"
    mine = daemon.log_path(sock)
    mine.write_text("my own notes\n")
    mine.chmod(0o600)  # private and the user's: still not the engine's
    with pytest.raises(UserError, match="is not a file this engine wrote"):
        daemon.check_paths(sock)
    assert mine.read_text() == "my own notes\n"
    mine.unlink()
    with daemon._open_log(mine) as out:
        out.write(b"started\n")
    daemon.check_paths(sock)  # its own log is taken up again
    assert mine.read_bytes().startswith(daemon.LOG_HEADER)
    assert stat.S_IMODE(mine.stat().st_mode) == 0o600


CONFIGS = {
    "max_tokens-1e30": ('model = "openai:m"\napi_key = "k"\nmax_tokens = 1e30\n', "max_tokens must be a whole"),
    "timeout-nan": ('model = "openai:m"\napi_key = "k"\ntimeout_s = nan\n', "timeout_s must be a number"),
    "retries-inf": ('model = "openai:m"\napi_key = "k"\nmax_retries = inf\n', "max_retries must be a whole"),
    "retries-negative": ('model = "openai:m"\napi_key = "k"\nmax_retries = -1\n', "max_retries must be a whole"),
    "price-text": ('model = "openai:m"\napi_key = "k"\nprice_in = "cheap"\n', "price_in must be a number"),
    "key-a-number": ('model = "openai:m"\napi_key = 5\n', "api_key must be text"),
    "unknown-setting": ('model = "openai:m"\napi_key = "k"\nprovider = "gemini"\n', "unknown setting"),
    "unknown-provider": ('model = "gemini:pro"\napi_key = "k"\n', "unknown LLM provider 'gemini'"),
}


@pytest.mark.parametrize("case", list(CONFIGS))
def test_config_numbers_and_providers_are_checked_in_one_line(case: str, isolated_home: Path) -> None:
    from engine.llm.config import resolve_config

    body, message = CONFIGS[case]
    isolated_home.mkdir(parents=True, exist_ok=True)
    config = isolated_home / "config.toml"
    config.write_text("[llm]\n" + body)
    config.chmod(0o600)
    with pytest.raises(UserError, match=message) as caught:
        resolve_config()
    assert "\n" not in str(caught.value)


def test_a_model_id_with_a_colon_on_a_custom_endpoint_is_not_a_provider(isolated_home: Path) -> None:
    from engine.llm.config import resolve_config

    isolated_home.mkdir(parents=True, exist_ok=True)
    config = isolated_home / "config.toml"
    config.write_text('[llm]\nmodel = "mistral:7b"\nbase_url = "http://127.0.0.1:1/v1"\n')
    config.chmod(0o600)
    assert resolve_config().model == "mistral:7b"


@pytest.mark.parametrize("case", ["bom", "oversized-field", "bom-yaml"])
def test_spreadsheet_csv_and_oversized_cells_are_read_or_refused_in_one_line(case: str, tmp_path: Path) -> None:
    from engine.triage.pairs import load_board_file

    if case == "bom":
        path = tmp_path / "p.csv"
        path.write_bytes(b"\xef\xbb\xbfname,base,ft\na,b,c\n")
        assert [p.name for p in load_board_file(path).pairs] == ["a"]
    elif case == "bom-yaml":
        path = tmp_path / "p.yaml"
        path.write_bytes(b"\xef\xbb\xbfpairs: [{name: a, base: b, ft: c}]\n")
        assert [p.name for p in load_board_file(path).pairs] == ["a"]
    else:
        path = tmp_path / "p.csv"
        path.write_text("name,base,ft\na,b," + "x" * 200_000 + "\n")
        with pytest.raises(UserError, match=r"p.csv: line 2: field larger than field limit") as caught:
            load_board_file(path)
        assert len(str(caught.value)) < 400


@pytest.mark.parametrize(("method", "params", "message"), [
    (methods.LOGIT_LENS, {"run": "r", "top_k": -3}, "top_k must be positive"),
    (methods.LENS_GRID, {"run": "r", "top_k": 0}, "top_k must be positive"),
    (methods.LOGIT_LENS, {"run": "r", "layer": -1}, "layer must be 0 or more"),
    (methods.PATCHSCOPE, {"run": "r", "pos": -2}, "pos must be 0 or more"),
    (methods.LENS_PCA, {"run": "r", "layer": -1}, "layer must be 0 or more"),
    (methods.TRIAGE_PAIR, {"base": "b", "ft": "f", "layer": -5}, "layer must be 0 or more"),
    (methods.ADL_COMPUTE, {"base": "b", "ft": "f", "seed": 10**23}, "does not fit in 64 bits"),
    (methods.STEER_GENERATE, {"run": "r", "seed": -(2**70)}, "does not fit in 64 bits"),
])
def test_negative_indices_counts_and_overflowing_ints_are_refused_before_anything_runs(
        method: methods.Method[Any, Any], params: dict[str, object], message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        method.params.from_json(params)
    assert method.params.from_json({**params, **{k: 0 for k in params if k not in ("run", "base", "ft")},
                                    "top_k": 1})


def test_the_cli_refuses_them_in_one_line_before_calling_an_engine(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.support.engine_helpers import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT), "DIFFLENS_SOCKET": str(tmp_path / "none.sock")}
    for args in (["tokens", "adl-0123456789", "--top-k", "-3"], ["tokens", "adl-0123456789", "--layer", "-1"],
                 ["compute", "--base", "b", "--ft", "f", "--seed", str(10**23)]):
        proc = subprocess.run([sys.executable, "-c", "from tui.cli import main; main()", *args], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), (args, proc.stderr)


@pytest.mark.parametrize("kind", ["file", "under-a-file"])
def test_a_runtime_dir_that_is_a_file_is_one_line(kind: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "afile"
    target.write_text("mine")
    monkeypatch.setenv("DIFFLENS_RUNTIME_DIR", str(target if kind == "file" else target / "sub"))
    with pytest.raises(PermissionError, match="DIFFLENS_RUNTIME_DIR") as caught:
        paths.runtime_dir()
    assert str(target) in str(caught.value) and target.read_text() == "mine"


@pytest.mark.parametrize("name", ["a\x85b", "abc\u202edcba", "a\u2066b", "a\x9bb", "a\u2028b", "a\x7fb"],
                         ids=["nel", "rtl-override", "isolate", "c1-csi", "line-separator", "del"])
def test_names_with_invisible_controls_are_refused_here_and_in_bundles(name: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="bad session name"):
        sessions.create(name)
    good, body = exported_session(tmp_path)
    body["session"]["name"] = name
    with pytest.raises(StoreError, match="not a valid difflens session file"):
        bundle.import_bundle(with_body(good, tmp_path / "named.difflens", body))
    assert sessions.check_name("café 漢字 [b]") == "café 漢字 [b]"


@pytest.mark.parametrize("fault", [errno.EROFS, errno.ENOSPC, errno.EACCES])
def test_an_import_the_store_cannot_take_names_the_store_not_the_bundle(
        fault: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good, _ = exported_session(tmp_path)
    before = store_state()

    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(fault, os.strerror(fault))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(StoreError) as caught:
        bundle.import_bundle(good)
    assert "cannot write into the store" in str(caught.value)
    assert "not a valid difflens session file" not in str(caught.value)
    assert store_state() == before
