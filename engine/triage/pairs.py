"""Reading a board file: `pairs.yaml` (a list of pairs, or {settings, pairs}) or `pairs.csv`
(`name,base,ft[,adapter,description]`). Every problem is one `UserError` line naming the file and row."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.models.specs import is_named_spec
from engine.yaml_text import load_yaml

REQUIRED = ("name", "base", "ft")
OPTIONAL = ("adapter", "description")
COLUMNS = REQUIRED + OPTIONAL
SETTINGS = frozenset(("corpus", "n", "k", "seed", "layers", "device", "dtype", "batch_size", "trust_remote_code",
                      "sequential", "layer", "positions", "top_k", "steer", "n_prompts", "max_strength", "llm",
                      "judge", "protocol", "devices", "ray", "null"))
FIX = "each pair needs name, base and ft (adapter and description optional); see `difflens triage --help`"


@dataclass(frozen=True)
class PairEntry:
    """One row of the board: what to diff and, optionally, what the finetune is known to be."""

    name: str
    base: str
    ft: str
    adapter: str | None = None
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BoardFile:
    """The pairs and the shared compute settings a file names."""

    pairs: list[PairEntry]
    settings: dict[str, Any]
    source: str


def load_board_file(path: str | Path) -> BoardFile:
    """Parse and validate a .yaml/.yml/.csv board file (relative model paths are read from its folder)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"pairs file {str(path)!r} does not exist", "pass a .yaml or .csv file listing the pairs")
    try:
        text = file.read_text(encoding="utf-8-sig")  # a spreadsheet's CSV starts with a byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {file.name}: {exc}", "pass a UTF-8 text file") from exc
    suffix = file.suffix.lower()
    if suffix in (".yaml", ".yml"):
        rows, settings = _yaml_rows(text, file.name)
    elif suffix == ".csv":
        rows, settings = _csv_rows(text, file.name), {}
    else:
        raise UserError(f"{file.name}: unknown pairs file type {suffix or '(none)'!r}", "use .yaml, .yml or .csv")
    pairs = validate_pairs(rows, file.name, base_dir=file.resolve().parent)
    return BoardFile(pairs=pairs, settings=settings, source=str(file.resolve()))


def validate_pairs(rows: list[Any], where: str = "pairs", base_dir: Path | None = None) -> list[PairEntry]:
    """Rows (dicts) to entries: unknown keys, missing fields, non-text values and duplicate names refused."""
    if not rows:
        raise UserError(f"{where}: no pairs listed", FIX)
    seen: set[str] = set()
    out = []
    for index, row in enumerate(rows, start=1):
        label = f"{where}: pair {index}"
        if not isinstance(row, dict):
            raise UserError(f"{label} is not a mapping of name/base/ft", FIX)
        if unknown := sorted(set(map(str, row)) - set(COLUMNS)):
            raise UserError(f"{label}: unknown field(s) {', '.join(unknown)}", f"allowed: {', '.join(COLUMNS)}")
        values: dict[str, Any] = {}
        for key in COLUMNS:
            value = row.get(key)
            if value is not None and not isinstance(value, str | int | float):
                raise UserError(f"{label}: {key} must be text", FIX)
            text = "" if value is None else str(value).strip()
            if key in REQUIRED and not text:
                raise UserError(f"{label}: missing {key}", FIX)
            values[key] = text or None
        if values["name"] in seen:
            raise UserError(f"{where}: duplicate pair name {values['name']!r}", "give every pair its own name")
        seen.add(values["name"])
        if base_dir is not None:
            for key in ("base", "ft", "adapter"):
                values[key] = _relative_to(values[key], base_dir)
        out.append(PairEntry(**values))
    return out


def _relative_to(spec: str | None, base_dir: Path) -> str | None:
    """`./m` or `../m` (or a relative path that exists beside the file) resolved against the file's folder; a named
    model (`demo`, `gemma-3-270m`) stays a name, as `parse_spec` reads it first."""
    if spec is None or Path(spec).is_absolute() or spec.startswith("~") or is_named_spec(spec):
        return spec
    candidate = base_dir / spec
    if spec.startswith(("./", "../")) or candidate.exists():
        return str(candidate.resolve())
    return spec


def _yaml_rows(text: str, name: str) -> tuple[list[Any], dict[str, Any]]:
    data = load_yaml(text, name)
    if isinstance(data, list):
        return data, {}
    if not isinstance(data, dict) or not isinstance(data.get("pairs"), list):
        raise UserError(f"{name}: expected a list of pairs or a mapping with a 'pairs' list", FIX)
    if unknown := sorted(set(map(str, data)) - {"pairs", "settings"}):
        raise UserError(f"{name}: unknown top-level key(s) {', '.join(unknown)}", "use 'pairs' and 'settings'")
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise UserError(f"{name}: 'settings' must be a mapping", f"allowed settings: {', '.join(sorted(SETTINGS))}")
    if unknown := sorted(set(map(str, settings)) - SETTINGS):
        raise UserError(f"{name}: unknown setting(s) {', '.join(unknown)}",
                        f"allowed settings: {', '.join(sorted(SETTINGS))}")
    return data["pairs"], settings


def _csv_rows(text: str, name: str) -> list[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text))
    try:
        lines = [row for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise UserError(f"{name}: line {reader.line_num}: {exc}",
                        f"keep each cell under {csv.field_size_limit()} characters and quote cells holding "
                        "commas, quotes or line breaks") from None
    if not lines:
        raise UserError(f"{name}: empty file", f"start with the header {','.join(COLUMNS)}")
    header = [cell.strip().lower() for cell in lines[0]]
    if unknown := [c for c in header if c not in COLUMNS]:
        raise UserError(f"{name}: unknown column(s) {', '.join(unknown)}", f"columns: {','.join(COLUMNS)}")
    if missing := [c for c in REQUIRED if c not in header]:
        raise UserError(f"{name}: missing column(s) {', '.join(missing)}", f"columns: {','.join(COLUMNS)}")
    if len(set(header)) != len(header):
        raise UserError(f"{name}: a column is named twice", f"columns: {','.join(COLUMNS)}")
    rows = []
    for number, cells in enumerate(lines[1:], start=2):
        if len(cells) > len(header):
            raise UserError(f"{name}: line {number} has {len(cells)} cells for {len(header)} columns",
                            "quote cells that contain commas")
        rows.append(dict(zip(header, cells, strict=False)))
    return rows
