"""ADL runs in the store, without their tensors: their result kind, naming a run by a prefix of its id, and the
list the run picker shows. Plain Python (no torch), so an engine answers these before its ops have loaded."""

from __future__ import annotations

import os
from typing import Any

from engine.errors import UserError
from engine.organisms.checkpoints import CHECKPOINTS_DIR
from store import results
from store.paths import interpolations_dir, nulls_dir

KIND = "adl"
MAX_CANDIDATES_SHOWN = 5  # an ambiguous prefix's error names at most this many runs, on one line


def resolve_run_id(name: str) -> str:
    """The whole id of the run `name` names: itself, or the one run whose id starts with it (ids are long to type,
    and a table may show only their start); an ambiguous prefix is refused with its candidates."""
    if not name or results.row(name) is not None:
        return name
    matches = results.keys_with_prefix(KIND, name)
    if len(matches) > 1:
        shown = ", ".join(matches[:MAX_CANDIDATES_SHOWN]) + (" …" if len(matches) > MAX_CANDIDATES_SHOWN else "")
        raise UserError(f"run prefix {name!r} matches {len(matches)} runs ({shown})",
                        "type more of the id (difflens runs lists them whole)")
    return matches[0] if matches else name


def list_runs() -> list[dict[str, Any]]:
    """Every stored run of the user's, newest first, as the run picker and `difflens runs` list them (the runs of
    a significance test's random adapters are the null's, and those of a trajectory's checkpoints and
    interpolation points are the trajectory's: they stay out)."""
    kept_out = (str(nulls_dir()) + os.sep, str(interpolations_dir()) + os.sep)
    return [{"run": r["key"], "base": r["meta"].get("base_label"), "ft": r["meta"].get("ft_label"),
             "corpus": r["meta"].get("corpus_label"), "n": r["meta"].get("n_texts"), "k": r["meta"].get("k"),
             "created": r["created"], "seconds": r["seconds"]} for r in results.list_results(KIND)
            if not _step_or_null(r["meta"], kept_out)]


def _step_or_null(meta: dict[str, Any], kept_out: tuple[str, ...]) -> bool:
    """Whether the run's finetune is a null's random adapter, an interpolation point or a training checkpoint."""
    request = meta.get("request")
    adapter = request.get("adapter") if isinstance(request, dict) else None
    return isinstance(adapter, str) and (adapter.startswith(kept_out)
                                         or os.path.basename(os.path.dirname(adapter)) == CHECKPOINTS_DIR)
