"""Bad input through the real `difflens` CLI: exit code ≠ 0, one stderr line naming the problem and the fix,
no traceback, and nothing half-written in DIFFLENS_HOME.

Most cases talk to one background engine found through DIFFLENS_RUNTIME_DIR (as a user's running engine
would be), so models load once; the first cases go through the private engine child the CLI spawns when no
engine runs. A full disk (a real tmpfs where the box allows a mount, else skipped; and a failed write inside
the op) and out-of-GPU-memory (simulated) run in-process.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.support.engine_helpers import PY, ROOT, engine_cli, engine_env, short_dir, write_corpus
from tests.support.tiny import WORDS, save_tiny, tiny_model

pytestmark = pytest.mark.reliability

_SCRIPT = Path(sys.executable).with_name("difflens")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [PY, "-c", "from tui.cli import main; main()"]
FAST = ["-n", "8", "-k", "3", "--batch-size", "4", "--device", "cpu"]


# ---- fixtures: hostile checkpoints and corpora, one background engine, one good run ----

def _other_tokenizer_model(path: Path) -> Path:
    """Same architecture, different tokenizer (50 extra words first): ids no longer line up."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3}
    for word in [f"x{i}" for i in range(50)] + WORDS:
        vocab.setdefault(word, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                  unk_token="<unk>")
    tiny_model("llama", vocab_size=len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@dataclass
class Paths:
    base: Path
    ft: Path
    vocab: Path          # another tokenizer and vocabulary size
    wide: Path           # hidden size 64 instead of 32
    wide_adapter: Path   # a LoRA adapter saved on the wide model
    nan: Path            # the finetune with one NaN weight in layer 2's MLP
    good: Path
    empty: Path
    latin1: Path
    short: Path
    run: str = ""


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path, tiny_ft_dir: Path) -> Paths:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("bad-input")
    wide = save_tiny(root / "wide", "llama", hidden=64)
    get_peft_model(tiny_model("llama", hidden=64), LoraConfig(r=2, target_modules=["q_proj", "v_proj"])) \
        .save_pretrained(root / "wide-adapter")
    nan = AutoModelForCausalLM.from_pretrained(tiny_ft_dir)
    with torch.no_grad():
        nan.model.layers[2].mlp.down_proj.weight[0, 0] = float("nan")
    nan.save_pretrained(root / "nan")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (root / "nan" / name).write_bytes((tiny_ft_dir / name).read_bytes())
    (root / "empty.txt").write_text("")
    (root / "latin1.txt").write_bytes("the cake is a bake of flour\nthe crème brûlée\n".encode("latin-1"))
    (root / "short.txt").write_text("the\ncake\nbake oven\n")
    return Paths(base=tiny_dir, ft=tiny_ft_dir, vocab=_other_tokenizer_model(root / "vocab"), wide=wide,
                 wide_adapter=root / "wide-adapter", nan=root / "nan", good=write_corpus(root / "good.txt"),
                 empty=root / "empty.txt", latin1=root / "latin1.txt", short=root / "short.txt")


@dataclass
class Engine:
    env: dict[str, str]
    home: Path


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with short_dir() as runtime:
        env = engine_env(runtime)
        started = engine_cli("start", "--socket", str(runtime / "engine.sock"), env=env)
        assert started.returncode == 0, started.stderr
        try:
            yield Engine(env, Path(env["DIFFLENS_HOME"]))
        finally:
            engine_cli("stop", "--socket", str(runtime / "engine.sock"), env=env)


@pytest.fixture(scope="module")
def run(engine: Engine, paths: Paths) -> Paths:
    """The good run the readout cases read (computed through the same CLI)."""
    done = difflens("compute", "--base", str(paths.base), "--ft", str(paths.ft), "--corpus", str(paths.good),
                    *FAST, "--json", env=engine.env)
    assert done.returncode == 0, done.stderr
    paths.run = re.search(r'"run": "([^"]+)"', done.stdout).group(1)  # type: ignore[union-attr]
    return paths


def difflens(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


# ---- what "refused cleanly" means ----

def store_state(home: Path) -> tuple[list[str], list[str]]:
    """Every file in the store (sqlite's own files aside) and every result row."""
    files = sorted(str(p.relative_to(home)) for p in home.rglob("*")
                   if p.is_file() and not p.name.startswith("difflens.sqlite"))
    db = home / "difflens.sqlite"
    if not db.exists():
        return files, []
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            keys = sorted(row[0] for row in conn.execute("select key from results"))
        except sqlite3.OperationalError:  # no results table yet
            keys = []
    return files, keys


def assert_refused(proc: subprocess.CompletedProcess[str], expect: str, after_progress: str | None = None) -> str:
    """Exit ≠ 0, nothing on stdout, exactly one stderr line `error: problem — fix` matching `expect`. A job that
    ran for seconds before failing (`after_progress`: its CLI title) may have logged its progress lines first."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    if after_progress is not None:
        assert all(line.startswith(f"{after_progress}: ") for line in lines[:-1]), proc.stderr
        lines = lines[-1:]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and " — " in lines[0], lines[0]
    assert re.search(expect, lines[0]), lines[0]
    assert proc.stdout.strip() == ""
    return lines[0]


def assert_nothing_half_written(home: Path) -> None:
    files, _ = store_state(home)
    assert not [f for f in files if f.endswith(".tmp") or ".checkpoint." in f], files


def compute(p: Paths, *extra: str, ft: Path | None = None, corpus: Path | None = None) -> list[str]:
    return ["compute", "--base", str(p.base), "--ft", str(ft or p.ft), "--corpus", str(corpus or p.good), *FAST,
            *extra]


LONG_PROMPT = " ".join(["cake"] * 200)   # 201 tokens with BOS; the tiny models have 128 positions

CASES: dict[str, tuple[Callable[[Paths], list[str]], str]] = {
    "k-zero": (lambda p: compute(p, "-k", "0"), r"k must be positive, got 0"),
    "k-negative": (lambda p: compute(p, "-k", "-2"), r"k must be positive, got -2"),
    "n-zero": (lambda p: compute(p, "-n", "0"), r"n must be positive, got 0"),
    "n-negative": (lambda p: compute(p, "-n", "-5"), r"n must be positive, got -5"),
    "other-vocabulary": (lambda p: compute(p, ft=p.vocab), r"not diffable: tokenizer vocabularies differ"),
    "other-shape": (lambda p: compute(p, ft=p.wide), r"not diffable: hidden sizes differ \(32 vs 64\)"),
    "adapter-for-another-base": (lambda p: compute(p, "--adapter", str(p.wide_adapter), ft=p.base),
                                 r"adapter .* does not fit .*size mismatch"),
    "layer-out-of-range": (lambda p: compute(p, "--layers", "99"), r"layers \[99\] out of range for a 4-layer"),
    "empty-corpus": (lambda p: compute(p, corpus=p.empty), r"has no texts"),
    "non-utf8-corpus": (lambda p: compute(p, corpus=p.latin1), r"is not UTF-8"),
    "corpus-shorter-than-k": (lambda p: compute(p, "-k", "5", corpus=p.short), r"no text .* has 5 tokens"),
    "nan-in-activations": (lambda p: compute(p, ft=p.nan), r"NaN or inf in the finetuned .* at layer 2"),
    "readout-layer-out-of-range": (lambda p: ["tokens", p.run, "--layer", "99", "--pos", "0"],
                                   r"layer 99 is not in run"),
    "readout-position-out-of-range": (lambda p: ["tokens", p.run, "--layer", "1", "--pos", "99"],
                                      r"position 99 out of range"),
    "unknown-run": (lambda p: ["tokens", "adl-0123456789abcdef"], r"no ADL run"),
    "prompt-longer-than-context": (
        lambda p: ["steer", p.run, "--layer", "1", "--strength", "1", "--prompt", LONG_PROMPT,
                   "--max-new-tokens", "8"], r"201 tokens \+ 8 new tokens exceeds the model's context of 128"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_leaves_the_store_as_it_was(case: str, engine: Engine, run: Paths) -> None:
    argv, expect = CASES[case]
    before = store_state(engine.home)
    assert_refused(difflens(*argv(run), env=engine.env), expect)
    assert store_state(engine.home) == before
    assert_nothing_half_written(engine.home)


@pytest.mark.parametrize(("case", "expect"), [("missing-model", r"model path .* does not exist"),
                                              ("k-zero", r"k must be positive")])
def test_bad_input_through_the_private_engine_child(case: str, expect: str, paths: Paths, tmp_path: Path) -> None:
    with short_dir() as runtime:   # no engine there: the CLI spawns its own child over stdio
        env = engine_env(runtime)
        argv = compute(paths, ft=tmp_path / "no-such-model") if case == "missing-model" else compute(paths, "-k", "0")
        assert_refused(difflens(*argv, env=env), expect)
        assert store_state(Path(env["DIFFLENS_HOME"])) == ([], [])


# ---- a full disk ----

@pytest.fixture
def full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, where this box lets the tests mount one (root in a container): else skipped."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the in-process full-disk test covers the store")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write zeros until the disk says it is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_a_really_full_disk_is_one_line_and_keeps_the_finished_run(full_tmpfs: Path, paths: Paths) -> None:
    with short_dir() as runtime:
        env = {**engine_env(runtime), "DIFFLENS_HOME": str(full_tmpfs / "home")}
        first = difflens(*compute(paths, "--json"), env=env)
        assert first.returncode == 0, first.stderr
        kept = store_state(full_tmpfs / "home")
        fill(full_tmpfs / "filler")
        line = assert_refused(difflens(*compute(paths, "--seed", "1"), env=env),
                              r"(disk full|disk is full).*— free space or point DIFFLENS_HOME",
                              after_progress="computing mean diff")
        assert "engine error" not in line
        assert store_state(full_tmpfs / "home") == kept
        assert_nothing_half_written(full_tmpfs / "home")


@pytest.mark.parametrize("writer", ["python", "safetensors"])
def test_a_write_failing_half_way_is_a_store_error_and_leaves_no_file(monkeypatch: pytest.MonkeyPatch, writer: str,
                                                                     paths: Paths, isolated_home: Path) -> None:
    """Python reports a full disk as OSError(ENOSPC); safetensors' Rust writer as its own error type."""
    from safetensors import SafetensorError

    from engine.adl.compute import compute_adl
    from engine.adl.request import AdlRequest
    from engine.server.failures import error_for
    from store import results
    from store.errors import StoreError

    def half_then_enospc(tensors: dict[str, np.ndarray], filename: str, metadata: dict[str, str]) -> None:
        Path(filename).write_bytes(b"\0" * 100)   # the disk filled up part-way through the file
        if writer == "safetensors":
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results, "save_file", half_then_enospc)
    request = AdlRequest(base=str(paths.base), ft=str(paths.ft), corpus=str(paths.good), n=8, k=3, device="cpu")
    with pytest.raises(StoreError) as info:
        compute_adl(request)
    error = error_for(info.value)
    assert "\n" not in error["message"] and "disk full" in error["data"]["problem"]
    assert "nothing was half-written" in error["data"]["fix"]
    assert store_state(isolated_home)[1] == []
    assert [p.name for p in (isolated_home / "tensors").iterdir()] == []


# ---- out of GPU memory (simulated: the box may have no GPU) ----

@pytest.mark.parametrize("sequential", [False, True])
def test_out_of_gpu_memory_retries_with_a_smaller_batch(monkeypatch: pytest.MonkeyPatch, paths: Paths,
                                                        sequential: bool) -> None:
    from engine.adl import accumulate, compute
    from engine.adl.compute import compute_adl
    from engine.adl.request import AdlRequest
    from store import results

    request = AdlRequest(base=str(paths.base), ft=str(paths.ft), corpus=str(paths.good), n=16, k=3,
                         batch_size=8, device="cpu", sequential=sequential)
    expected = compute_adl(request).result.tensors["mean_diff"]
    for path in (Path(os.environ["DIFFLENS_HOME"]) / "tensors").iterdir():
        path.unlink()
    results.connect().execute("delete from results")

    real = accumulate.read_positions
    batch_sizes: list[int] = []
    calls = {"n": 0}

    def tight_memory(model: Any, batch: Any, layers: list[int]) -> torch.Tensor:
        calls["n"] += 1
        batch_sizes.append(batch.input_ids.shape[0])
        # joint mode: the finetuned side (every second call) is the one that runs out, after base succeeded
        if batch.input_ids.shape[0] > 2 and (sequential or calls["n"] % 2 == 0):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, batch, layers)

    monkeypatch.setattr(accumulate, "read_positions", tight_memory)
    monkeypatch.setattr(compute, "read_positions", tight_memory)
    retried = compute_adl(request)
    assert batch_sizes[0] == 8 and {8, 4, 2} <= set(batch_sizes) and max(batch_sizes[-2:]) == 2
    assert retried.result.meta["n_texts"] == 16
    assert np.abs(retried.result.tensors["mean_diff"] - expected).max() < 1e-5


def test_out_of_gpu_memory_at_batch_size_one_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, paths: Paths,
                                                              isolated_home: Path) -> None:
    from engine.adl import accumulate
    from engine.adl.compute import compute_adl
    from engine.adl.request import AdlRequest
    from engine.errors import UserError

    def no_memory(model: Any, batch: Any, layers: list[int]) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(accumulate, "read_positions", no_memory)
    request = AdlRequest(base=str(paths.base), ft=str(paths.ft), corpus=str(paths.good), n=8, k=3, batch_size=4,
                         device="cpu")
    with pytest.raises(UserError, match=r"out of GPU memory even with batch size 1 — use --dtype bfloat16"):
        compute_adl(request)
    assert store_state(isolated_home)[1] == []
    assert_nothing_half_written(isolated_home)
