"""`--pairs hub:BASE_ID[?TEXT]`: a board of every finetune and adapter of a base that the hub lists.

The hub's model tree tags a derived model `base_model:finetune:BASE` (full weights) or
`base_model:adapter:BASE` (a peft adapter); TEXT narrows the list to ids containing it. The pairs used are
written as a board file in the store (`boards/`), so the board can be re-run and read without the hub.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from engine.deadline import within_deadline
from engine.errors import JobCancelled, UserError
from engine.jobs import JobContext
from engine.triage.pairs import PairEntry
from store.atomic import write_text_atomic

if TYPE_CHECKING:
    from huggingface_hub import HfApi

PREFIX = "hub:"
RELATIONS = ("finetune", "adapter")
DEFAULT_ENDPOINT = "https://huggingface.co"  # where huggingface_hub goes unless HF_ENDPOINT says otherwise
LIST_DEADLINE_S = 60.0   # the whole listing (two paged queries); the hub client itself waits forever


@dataclass(frozen=True)
class HubQuery:
    """The base's hub id and the optional text a listed id must contain."""

    base: str
    search: str | None = None

    @classmethod
    def parse(cls, text: str) -> HubQuery:
        base, _, search = text.removeprefix(PREFIX).partition("?")
        base = base.strip()
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", base):
            raise UserError(f"{text!r} does not name a hub model", "pass --pairs hub:ORG/NAME[?TEXT], "
                            "e.g. hub:google/gemma-3-270m?lora")
        return cls(base, search.strip() or None)


def hub_entries(query: HubQuery, limit: int | None = None, api: HfApi | None = None,
                ctx: JobContext | None = None) -> list[PairEntry]:
    """The base's finetunes and adapters, most downloaded first, at most `limit`. The hub's client has no HTTP
    timeout of its own: the listing gets `LIST_DEADLINE_S` and hears a cancel of `ctx` meanwhile."""
    if api is None:  # imported here: huggingface_hub costs ~0.5 s of every engine start, and only this asks the hub
        from huggingface_hub import HfApi

        api = HfApi()
    where = os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT

    def listing() -> dict[str, tuple[int, PairEntry]]:
        found: dict[str, tuple[int, PairEntry]] = {}
        for relation in RELATIONS:
            for model in api.list_models(filter=f"base_model:{relation}:{query.base}", search=query.search,
                                         sort="downloads", limit=limit):
                entry = (PairEntry(model.id, query.base, query.base, adapter=model.id) if relation == "adapter"
                         else PairEntry(model.id, query.base, model.id))
                found.setdefault(model.id, (-(model.downloads or 0), entry))
        return found

    timed_out = UserError(f"the hub at {where} did not list the finetunes of {query.base} within "
                          f"{LIST_DEADLINE_S:.0f} s", "check the network (and HF_ENDPOINT), or pass --pairs FILE")
    try:
        found = within_deadline(listing, LIST_DEADLINE_S, ctx, "hub-listing", timed_out)
    except (UserError, JobCancelled):
        raise
    except Exception as exc:  # no network, rate limit, hub error: one line, with the way out
        raise UserError(f"cannot list the finetunes of {query.base} on the hub at {where}: {type(exc).__name__}",
                        "check the network (HF_TOKEN for gated models), or pass --pairs FILE") from exc
    entries = [entry for _, entry in sorted(found.values(), key=lambda item: (item[0], item[1].name))]
    if not entries:
        raise UserError(f"the hub lists no finetunes or adapters of {query.base}"
                        + (f" matching {query.search!r}" if query.search else ""),
                        "check the base id (the model tree lists derivatives of the exact base)")
    return entries[:limit] if limit is not None else entries


def write_hub_board(query: HubQuery, entries: list[PairEntry], folder: Path) -> Path:
    """Write the pairs as a board file named after the query; returns its path."""
    digest = hashlib.sha256(f"{query.base}?{query.search or ''}".encode()).hexdigest()[:8]
    path = folder / f"hub-{query.base.replace('/', '--')}-{digest}.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    pairs = [{key: value for key, value in e.to_json().items() if value is not None} for e in entries]
    write_text_atomic(path, yaml.safe_dump({"pairs": pairs}, sort_keys=False))
    return path
