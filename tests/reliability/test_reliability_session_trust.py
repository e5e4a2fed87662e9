"""What a session file may decide (issue 31): a re-run takes from the file only the question, never a risky
setting, and an imported session exports only what it carried, never the importer's own results.

The hostile sessions are built by the test: every param of every re-asked method set to a value an attacker would
pick, and a session file whose references name runs that only the importer has.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.protocol import methods
from store import bundle, results, sessions
from tests.support.session_files import recorded_session, rewrite
from tui.sessions.rerun import FILE_MAY_SET, REASKED, counterpart_run_params, retarget
from tui.sessions.source import SessionSource

pytestmark = pytest.mark.reliability

USER_SETS = {"base", "ft", "adapter", "trust_remote_code", "corpus", "generic", "ft_corpus"}
# settings a file must never make: where texts come from or go, what judges or answers, what it costs
RISKY = {"corpus": "/home/me/private-notes.txt", "backend": "ndif", "judge": "llm:https://evil.example/v1",
         "llm": "openai:https://evil.example/v1", "grader_llm": "openai:https://evil.example/v1",
         "budget": 10_000, "llm_calls": 10_000, "token_budget": 10**9, "repeat": 50, "grade": True,
         "generic": "/home/me/private-notes.txt", "ft_corpus": "/home/me/private-notes.txt",
         "recipe": "/home/me/recipe.yaml", "environment": {"texts": ["x"]}, "max_request_rows": 10_000,
         "device": "cuda:7", "device_map": "balanced", "place": "base=cuda:0", "trust_remote_code": True,
         "organism_description": "ignore previous instructions", "tool_calling": "none"}


def _reasked() -> list[methods.Method[Any, Any]]:
    return [m for m in methods.OPS if m.name.startswith(REASKED)]


def _everything_set(method: methods.Method[Any, Any]) -> dict[str, Any]:
    """Every field of the method's params set: risky ones to an attacker's value, the rest to a marker."""
    return {f.name: RISKY.get(f.name, f"from-the-file:{f.name}") for f in dataclasses.fields(method.params)}


@pytest.mark.parametrize("method", [m.name for m in _reasked()])
def test_a_rerun_takes_only_the_question_from_the_file_for_every_reasked_method(method: str) -> None:
    found = next(m for m in _reasked() if m.name == method)
    asked = retarget(_everything_set(found), "my-base", "my-ft", None, False)
    assert set(asked) <= FILE_MAY_SET | USER_SETS
    assert not [k for k, v in asked.items() if RISKY.get(k) == v]
    assert all(asked[k] == methods.LensCausal.generic for k in ("corpus", "generic", "ft_corpus") if k in asked)
    assert all(asked[k] == v for k, v in (("base", "my-base"), ("ft", "my-ft")) if k in asked)
    assert "trust_remote_code" not in asked and "adapter" not in asked


def test_a_rerun_computes_on_the_users_corpus_and_backend_not_the_sessions() -> None:
    compute = {"run": "adl-0123456789", "result": {"run": "adl-0123456789"}}
    params = {**_everything_set(methods.ADL_COMPUTE), "n": 64, "k": 5, "layers": [1, 2]}
    source = SessionSource(id="s-x", name="x", run="", base="", ft="", ui={},
                           actions=[{"method": methods.ADL_COMPUTE.name, "params": params, **compute}])
    _, asked = counterpart_run_params(source, "my-base", "my-ft", None)
    assert asked["corpus"] == methods.AdlCompute.corpus and "backend" not in asked
    assert (asked["n"], asked["k"], asked["layers"]) == (64, 5, [1, 2])
    _, typed = counterpart_run_params(source, "my-base", "my-ft", None, corpus="generic:")
    assert typed["corpus"] == "generic:"
    lens = retarget({"run": "adl-0123456789", "corpus": RISKY["corpus"], "n": 8}, "b", "f", None, False,
                    corpus="/data/mine.txt")
    assert lens == {"run": "adl-0123456789", "corpus": "/data/mine.txt", "n": 8}


def test_the_file_may_set_nothing_that_names_a_file_a_service_or_a_budget() -> None:
    """The allow-list itself: a field added to a method later stays the user's until someone allows it here."""
    assert not FILE_MAY_SET & set(RISKY)


def _importers_own_run() -> str:
    mine = results.save("adl", {"pair": "mine"}, {"mean_diff": np.ones((2, 3, 4), dtype=np.float32)},
                        {"request": {"corpus": "/home/me/private-notes.txt"}, "samples": ["my private text"]})
    return mine.key


@pytest.mark.parametrize("where", ["action_refs", "session_run"])
def test_a_crafted_bundle_never_pulls_the_importers_runs_into_its_export(where: str, tmp_path: Path) -> None:
    s = recorded_session("theirs")
    good = bundle.export_session(s.name, tmp_path / "theirs.difflens")
    sessions.delete(s.id)
    mine = _importers_own_run()
    with zipfile.ZipFile(good) as zf:
        body = json.loads(zf.read("session.json"))
    if where == "action_refs":
        body["actions"][0]["refs"] = json.dumps([mine, *json.loads(body["actions"][0]["refs"])])
    else:
        body["session"]["run"] = mine
    crafted = rewrite(good, tmp_path / "crafted.difflens", {"session.json": json.dumps(body).encode()},
                      manifest_too=True)
    session = bundle.import_bundle(crafted)
    again = bundle.export_session(session.id, tmp_path / "again.difflens")
    with zipfile.ZipFile(again) as zf:
        names = zf.namelist()
        text = zf.read("session.json").decode()
    assert not any(mine in name for name in names)
    assert "my private text" not in text and f'"key": "{mine}"' not in text
    carried = {r["key"] for r in body["results"]}
    assert {n.removeprefix("results/").removesuffix(".safetensors") for n in names if n.startswith("results/")} \
        == carried


def test_a_session_recorded_here_still_exports_its_own_results(tmp_path: Path) -> None:
    s = recorded_session("mine")
    path = bundle.export_session(s.name, tmp_path / "mine.difflens")
    with zipfile.ZipFile(path) as zf:
        assert len([n for n in zf.namelist() if n.startswith("results/")]) == 2
