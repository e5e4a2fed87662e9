"""The board in the store: a `boards` row per board file and a `board_pairs` row per triaged pair.

A pair's key is the content hash of everything its outcome depends on (both models' identities, the
compute and report settings, the description and the LLM), so a finished pair is skipped on re-run
and a changed pair (new weights, other settings) is triaged again. Failed pairs are retried."""

from __future__ import annotations

import json
import time
from typing import Any

from store.db import connect
from store.hashing import canonical_json, content_key
from store.schema import BOARD_PAIRS, BOARDS

DONE, ERROR = "done", "error"


def pair_key(inputs: dict[str, Any]) -> str:
    return content_key("board-pair", inputs)


def board_id(source: str, names: list[str]) -> str:
    return content_key("board", {"source": source, "names": names})


def finished(key: str) -> dict[str, Any] | None:
    """The stored outcome of a finished pair (None when never run or when it failed)."""
    rows = list(connect()[BOARD_PAIRS].rows_where("key = ? and status = ?", [key, DONE], limit=1))
    return _decode(rows[0]) if rows else None


def save_pair(key: str, outcome: dict[str, Any], report: dict[str, Any] | None, seconds: float) -> None:
    """Record a pair's outcome (done or error) as one row."""
    connect().table(BOARD_PAIRS).upsert({
        "key": key, "name": outcome["name"], "base": outcome["base"], "ft": outcome["ft"],
        "adapter": outcome.get("adapter"), "status": ERROR if outcome.get("error") else DONE,
        "score": outcome.get("score"), "trace": canonical_json(outcome.get("trace")),
        "hypothesis": outcome.get("hypothesis"), "hypothesis_source": outcome.get("hypothesis_source"),
        "run": outcome.get("run"), "error": outcome.get("error"),
        "report": canonical_json(report) if report is not None else None, "seconds": seconds,
        "updated": time.time()}, pk="key")


def save_board(bid: str, name: str, source: str, keys: list[dict[str, str]], settings: dict[str, Any],
               status: str) -> None:
    """Record the board (its pairs by name and key) so the TUI can show the latest one."""
    table = connect().table(BOARDS)
    now = time.time()
    created = next(iter(table.rows_where("id = ?", [bid], limit=1)), {}).get("created", now)
    table.upsert({"id": bid, "name": name, "source": source, "pairs": canonical_json(keys),
                  "settings": canonical_json(settings), "status": status, "created": created, "updated": now},
                 pk="id")


def latest_board() -> dict[str, Any] | None:
    """The most recently updated board with its pairs' stored outcomes (no reports), sorted by score."""
    db = connect()
    rows = list(db[BOARDS].rows_where(order_by="updated desc", limit=1))
    if not rows:
        return None
    board = rows[0]
    pairs = []
    for item in json.loads(board["pairs"]):
        found = list(db[BOARD_PAIRS].rows_where("key = ?", [item["key"]], limit=1))
        stored = _decode(found[0]) if found else {"name": item["name"], "error": "not run yet"}
        stored.pop("report", None)
        pairs.append(stored)
    return {"id": board["id"], "name": board["name"], "source": board["source"], "status": board["status"],
            "updated": board["updated"], "pairs": sort_pairs(pairs)}


def sort_pairs(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """By significance against the null: readable traces first, each group by z (highest first), then by trace
    strength; pairs never tested (stored before significance) after those that were; failed pairs last."""
    def rank(pair: dict[str, Any]) -> tuple[Any, ...]:
        sig = (pair.get("trace") or {}).get("significance") or {}
        z = sig.get("z")
        return (pair.get("score") is None, sig.get("readable") is not True, z is None, -(z or 0.0),
                -(pair.get("score") or 0.0), pair["name"])

    return sorted(pairs, key=rank)


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name in ("trace", "report"):
        out[name] = json.loads(out[name]) if out.get(name) else None
    return out
