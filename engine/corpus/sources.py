"""Where texts come from: a Hugging Face dataset (streamed), a local file, the shipped generic text, an
organism recipe's training documents (`recipe:NAME`, the finetuning data of a recipe-trained organism), the
base model itself (`self:`, the offline default, standing in for the paper's generic web text), or generic chats
(`chat:`: the shipped generic user questions, each answered by the base model itself, read around the assistant
turn as the paper's chat datasets are). Sampling is deterministic by seed.

An example is either a string (plain text) or a list of chat messages (`{"role", "content"}`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.organisms.make_data import load_recipe, make_data, recipe_path

Example = str | list[dict[str, str]]
GENERIC_TEXT = Path(__file__).resolve().parent.parent / "organisms" / "generic_text.txt"
GENERIC_QUESTIONS = Path(__file__).resolve().parent / "generic_questions.txt"
SELF, CHAT = "self:", "chat:"
_TEXT_COLUMNS = ("text", "content", "document", "prompt")


@dataclass(frozen=True)
class CorpusSpec:
    """`kind` is `self`, `chat`, `generic`, `file`, `recipe` or `hf`; `identity()` pins the content for cache keys."""

    kind: str
    source: str = ""
    split: str = "train"
    column: str | None = None

    def label(self) -> str:
        return {"self": SELF, "chat": CHAT, "generic": "generic:"}.get(self.kind) or (
            Path(self.source).name if self.kind == "file" else f"{self.kind}:{self.source}")

    def content_file(self) -> Path:
        """The file that pins a local corpus's texts (a recipe's YAML for `recipe:`, the questions for `chat:`)."""
        if self.kind == "recipe":
            return recipe_path(self.source)
        if self.kind == "chat":
            return GENERIC_QUESTIONS
        return Path(self.source) if self.kind == "file" else GENERIC_TEXT

    def identity(self) -> dict[str, Any]:
        ident: dict[str, Any] = {"kind": self.kind, "split": self.split, "column": self.column}
        if self.kind in ("file", "generic", "recipe", "chat"):
            from store.hashing import file_sha256

            ident["sha256"] = file_sha256(self.content_file())
        else:
            ident["source"] = self.source
        return ident


def parse_corpus(text: str) -> CorpusSpec:
    """`self:`, `chat:`, `generic:`, `recipe:NAME`, a path to .txt/.jsonl/.parquet, or `hf:NAME[:SPLIT][#COLUMN]`
    (or a bare HF id)."""
    text = text.strip()
    if text.startswith("recipe:"):
        name = text.removeprefix("recipe:").strip()
        load_recipe(name)
        return CorpusSpec("recipe", name)
    if text in (SELF, "self"):
        return CorpusSpec("self")
    if text in (CHAT, "chat"):
        return CorpusSpec("chat", str(GENERIC_QUESTIONS))
    if text in ("generic:", "generic"):
        return CorpusSpec("generic", str(GENERIC_TEXT))
    path = Path(text).expanduser()
    if path.suffix in (".txt", ".jsonl", ".json", ".parquet") or path.exists():
        if not path.is_file():
            raise UserError(f"corpus file {text!r} does not exist", "check the path, or use --corpus self:")
        return CorpusSpec("file", str(path.resolve()))
    name = text.removeprefix("hf:")
    name, _, column = name.partition("#")
    name, _, split = name.partition(":")
    if "/" not in name and not text.startswith("hf:"):
        raise UserError(f"unknown corpus {text!r}",
                        "pass self:, chat:, generic:, recipe:NAME, a .txt/.jsonl/.parquet file, or "
                        "hf:ORG/DATASET[:SPLIT][#COLUMN]")
    return CorpusSpec("hf", name, split=split or "train", column=column or None)


def load_examples(spec: CorpusSpec, n: int, seed: int) -> list[Example]:
    """Up to `n` examples, a seeded random sample (files) or a seeded shuffled stream (HF)."""
    if spec.kind in ("self", "chat"):
        raise ValueError("self: and chat: corpora are sampled from the model (engine.corpus.windows)")
    if spec.kind == "hf":
        return _hf_examples(spec, n, seed)
    if spec.kind == "recipe":
        return [d.get("text") or d["messages"] for d in make_data(spec.source, n, seed)]
    docs = _file_examples(Path(spec.source), spec.column)
    if not docs:
        raise UserError(f"corpus file {spec.source!r} has no texts", "pass a file with one text per line")
    rng = random.Random(seed)
    return rng.sample(docs, n) if len(docs) > n else rng.sample(docs, len(docs))


def _file_examples(path: Path, column: str | None) -> list[Example]:
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            return [example for row in table.to_pylist() if (example := _example(row, column))]
        raw = path.read_text(encoding="utf-8-sig")  # a BOM is not part of the first text
    except UnicodeDecodeError as exc:
        raise UserError(f"corpus file {str(path)!r} is not UTF-8 text", "convert it to UTF-8") from exc
    if path.suffix in (".jsonl", ".json"):
        out: list[Example] = []
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path.name} line {number} is not JSON", "write one JSON object per line") from exc
            if example := _example(record, column):
                out.append(example)
        return out
    return [line.strip() for line in raw.splitlines() if line.strip()]


def _example(record: Any, column: str | None) -> Example | None:
    if isinstance(record, str):
        return record or None
    if not isinstance(record, dict):
        return None
    if column:
        return record.get(column) or None
    if isinstance(record.get("messages"), list):
        return record["messages"]
    for name in _TEXT_COLUMNS:
        if isinstance(record.get(name), str) and record[name]:
            return record[name]
    return None


def _hf_examples(spec: CorpusSpec, n: int, seed: int) -> list[Example]:
    try:
        from datasets import load_dataset

        stream = load_dataset(spec.source, split=spec.split, streaming=True)
        stream = stream.shuffle(seed=seed, buffer_size=max(1000, 2 * n))
        out: list[Example] = []
        for record in stream:
            if example := _example(record, spec.column):
                out.append(example)
            if len(out) >= n:
                break
    except (OSError, ValueError, ConnectionError) as exc:
        raise UserError(f"cannot read dataset {spec.source!r}: {str(exc).splitlines()[0][:160]}",
                        "check the name and network access, or use --corpus self: / a local file") from exc
    return out


def generic_questions(n: int, seed: int) -> list[str]:
    """`n` of the shipped generic user questions in an order shuffled by `seed`; past all of them they repeat
    (each repeat gets its own sampled answer)."""
    questions = [q.strip() for q in GENERIC_QUESTIONS.read_text(encoding="utf-8").splitlines() if q.strip()]
    random.Random(seed).shuffle(questions)
    return (questions * -(-n // len(questions)))[:n]
