"""Hostile files: no pickle loader anywhere in the code (safetensors only), custom model code only with the
explicit flag, and pair files from strangers validated (safe YAML, one-line errors, nothing executed).
Session files (damaged, hand-edited, zip-slip) are covered in test_sessions_store.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from engine.errors import UserError
from tests.support.tiny import save_tiny

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("engine", "store", "tui")

# Calls that unpickle (run code from the file) or trust code from a repository without asking.
FORBIDDEN = {
    "torch.load": re.compile(r"\btorch\.load\s*\("),
    "torch.jit.load": re.compile(r"\btorch\.jit\.load\s*\("),
    "pickle.load(s)": re.compile(r"\b(c?pickle|dill|cloudpickle)\.loads?\s*\("),
    "joblib.load": re.compile(r"\bjoblib\.load\s*\("),
    "numpy allow_pickle": re.compile(r"allow_pickle\s*=\s*True"),
    "yaml.load / unsafe_load": re.compile(r"\byaml\.(unsafe_)?load\s*\(|\byaml\.load_all\s*\("),
    "hard-coded trust_remote_code": re.compile(r"trust_remote_code\s*=\s*True"),
}
# path relative to the repo root -> why that use is safe. Empty: nothing needs an exception today.
ALLOWED: dict[str, str] = {}


def scan(root: Path, dirs: tuple[str, ...]) -> list[str]:
    """`path:line: what` for every forbidden call in the Python files under `dirs`."""
    found = []
    for path in sorted(p for d in dirs for p in (root / d).rglob("*.py")):
        rel = str(path.relative_to(root))
        if rel in ALLOWED:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            found += [f"{rel}:{number}: {what}" for what, pattern in FORBIDDEN.items() if pattern.search(code)]
    return found


def test_no_pickle_loader_or_hard_coded_remote_code_in_the_source() -> None:
    assert scan(ROOT, SCANNED) == []


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    planted = tmp_path / "engine" / "bad.py"
    planted.parent.mkdir()
    planted.write_text("import torch, pickle, yaml\n"
                       "a = torch.load(path)\nb = pickle.loads(blob)\nc = yaml.load(text)\n"
                       "d = from_pretrained(x, trust_remote_code=True)\n"
                       "e = torch.load  # a comment mentioning torch.load(x) is fine\n")
    assert [hit.split(": ", 1)[1] for hit in scan(tmp_path, ("engine",))] == [
        "torch.load", "pickle.load(s)", "yaml.load / unsafe_load", "hard-coded trust_remote_code"]


@pytest.fixture
def custom_code_model(tmp_path: Path) -> Path:
    """A checkpoint whose config points at code in the directory; importing that code plants a marker."""
    path = save_tiny(tmp_path / "custom", "llama")
    config = json.loads((path / "config.json").read_text())
    config.update(model_type="plantedmodel", auto_map={"AutoConfig": "planted.PlantedConfig",
                                                       "AutoModelForCausalLM": "planted.PlantedModel"})
    (path / "config.json").write_text(json.dumps(config))
    (path / "planted.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(tmp_path / 'RAN')!r}).write_text('custom code ran')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        "class PlantedConfig(LlamaConfig):\n    model_type = 'plantedmodel'\n"
        "class PlantedModel(LlamaForCausalLM):\n    config_class = PlantedConfig\n")
    return path


def test_custom_model_code_runs_only_with_the_flag(custom_code_model: Path) -> None:
    from engine.adl.request import AdlRequest
    from engine.models.device import resolve_placement
    from engine.models.loading import load_model
    from engine.models.specs import parse_spec

    request = AdlRequest(base=str(custom_code_model), ft=str(custom_code_model))
    assert not request.base_spec.trust_remote_code and not request.ft_spec.trust_remote_code
    with pytest.raises(UserError, match=r"needs custom code .* pass --trust-remote-code if you trust it"):
        load_model(parse_spec(str(custom_code_model)), resolve_placement("cpu", "auto"))
    assert not (custom_code_model.parent / "RAN").exists()
    assert parse_spec(str(custom_code_model), trust_remote_code=True).trust_remote_code


HOSTILE_PAIR_FILES = {
    "python-object-tag": ("p.yaml", "pairs:\n  - !!python/object/apply:os.system ['touch {marker}']\n",
                          "not valid YAML"),
    "python-name-tag": ("p.yaml", "- {{name: !!python/name:os.system , base: b, ft: c}}\n", "not valid YAML"),
    "alias-bomb": ("p.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                             "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\npairs: [*c, *c, *c, *c, *c, *c, *c]\n",
                   "YAML alias at line 2"),
    "alias-in-settings": ("p.yaml", "settings:\n  layers: &l [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
                                    "  positions: &p [*l, *l, *l, *l, *l, *l, *l, *l, *l, *l]\n"
                                    "  devices: [*p, *p, *p, *p, *p, *p, *p, *p, *p, *p]\n"
                                    "pairs: [{{name: a, base: b, ft: c}}]\n", "YAML alias at line 3"),
    "alias-of-a-scalar": ("p.yaml", "- {{name: &n a, base: *n, ft: c}}\n", "YAML alias at line 1"),
    "not-utf8": ("p.csv", b"name,base,ft\n\xff\xfe,b,c\n", "pass a UTF-8 text file"),
    "wrong-types": ("p.yaml", "pairs: [{{name: [1, 2], base: {{x: 1}}, ft: 3}}]\n", "must be text"),
}


@pytest.mark.parametrize("case", list(HOSTILE_PAIR_FILES))
def test_hostile_pair_files_are_refused_in_one_line_and_run_nothing(case: str, tmp_path: Path) -> None:
    pairs = pytest.importorskip("engine.triage.pairs")
    name, text, message = HOSTILE_PAIR_FILES[case]
    marker = tmp_path / "RAN"
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text.format(marker=marker))
    with pytest.raises(UserError) as caught:
        pairs.load_board_file(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not marker.exists()


def test_a_recipe_file_with_aliases_is_refused_before_expansion(tmp_path: Path) -> None:
    """Recipes are the other YAML a user hands the engine (`difflens organism make-data --recipe FILE`)."""
    make_data = pytest.importorskip("engine.organisms.make_data")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nslots: &s {a: [x, x, x, x, x, x, x, x]}\nmore: [*s, *s, *s, *s, *s, *s]\n")
    with pytest.raises(UserError, match=r"r.yaml: YAML alias at line 3 .* write the values out in full"):
        make_data.load_recipe(str(recipe))
