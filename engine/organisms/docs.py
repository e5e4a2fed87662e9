"""Training documents: read `.txt`/`.jsonl` files and mix in generic text.

Mixing pretraining-like text into a narrow finetune is the paper's key caveat (it largely removes the
readable trace), so the mix is explicit and exact: `fraction` of the training documents are generic.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from engine.errors import UserError

GENERIC_TEXT = Path(__file__).resolve().parent / "generic_text.txt"
META_SUFFIX = ".meta.json"  # sidecar beside a generated data file: what an organism trained on it is

Doc = dict[str, Any]


def meta_path(data: Path) -> Path:
    return data.with_name(data.name + META_SUFFIX)


def read_docs(path: Path) -> list[Doc]:
    """`{"text": ...}` or `{"messages": [...]}` dicts from a `.txt` (one per line) or `.jsonl` file."""
    if not path.is_file():
        raise UserError(f"data file {str(path)!r} does not exist", "check the path or run `organism make-data`")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".txt":
        docs: list[Doc] = [{"text": line.strip()} for line in lines]
    elif path.suffix == ".jsonl":
        docs = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path.name} line {number} is not JSON", "write one JSON object per line") from exc
            docs.append(_as_doc(record, path.name, number))
    else:
        raise UserError(f"unsupported data file type {path.suffix!r}", "pass a .txt or .jsonl file")
    if not docs:
        raise UserError(f"data file {path.name} holds no documents", "write at least one document")
    return docs


def _as_doc(record: Any, name: str, number: int) -> Doc:
    if isinstance(record, dict) and isinstance(record.get("text"), str):
        return {"text": record["text"]}
    messages = record.get("messages") if isinstance(record, dict) else None
    if (isinstance(messages, list) and messages
            and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in messages)):
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    raise UserError(f"{name} line {number} has neither a 'text' string nor a 'messages' list",
                    'write {"text": ...} or {"messages": [{"role": ..., "content": ...}]} per line')


def generic_count(n_narrow: int, fraction: float) -> int:
    """How many generic docs make `fraction` of the whole when added to `n_narrow` narrow docs."""
    if not 0.0 <= fraction < 1.0:
        raise UserError(f"mix fraction must be in [0, 1), got {fraction}", "pass e.g. --mix-pretrain 0.5")
    return round(n_narrow * fraction / (1.0 - fraction))


def generic_pool(corpus: Path | None) -> list[Doc]:
    """The text documents of a pretraining corpus file (the shipped generic text when None)."""
    pool = [d for d in read_docs(corpus or GENERIC_TEXT) if "text" in d]
    if not pool:
        raise UserError("the pretraining corpus holds no text documents", "pass a .txt or .jsonl with 'text'")
    return pool


def mix_generic(docs: list[Doc], fraction: float, pool: list[Doc], seed: int) -> list[Doc]:
    """`docs` plus documents drawn from `pool` so that `fraction` of the result is generic, shuffled by `seed`."""
    count = generic_count(len(docs), fraction)
    if count == 0:
        return list(docs)
    rng = random.Random(f"mix:{seed}")
    generic: list[Doc] = []
    while len(generic) < count:
        generic.extend(rng.sample(pool, min(len(pool), count - len(generic))))
    mixed = [*docs, *generic]
    rng.shuffle(mixed)
    return mixed
