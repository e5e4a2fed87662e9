"""Reading a board file: `pairs.yaml` (a list of pairs, or {settings, pairs}) or `pairs.csv`
(`name,base,ft[,adapter,description]`). A YAML pair may also give any triage setting of its own (`n: 64`,
`layer: 6`), which overrides the board's for that pair. Every problem is one `UserError` line naming the file,
the row and the key."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.models.specs import is_named_spec
from engine.protocol.methods import TRIAGE_SETTINGS, BoardOptions, given_settings
from engine.protocol.params import ParamsError
from engine.yaml_text import load_yaml

REQUIRED = ("name", "base", "ft")
OPTIONAL = ("adapter", "description")
COLUMNS = REQUIRED + OPTIONAL
BOARD_OPTIONS = tuple(f.name for f in fields(BoardOptions))
FIX = "each pair needs name, base and ft (adapter, description and triage settings optional); see docs/boards.md"


@dataclass(frozen=True)
class PairEntry:
    """One row of the board: what to diff, and the settings of its own (what the finetune is known to be as
    `description`, any other triage setting), checked and typed, that override the board's for this pair."""

    name: str
    base: str
    ft: str
    adapter: str | None = None
    settings: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_json(self) -> dict[str, Any]:
        """The row as a board file writes it."""
        return {"name": self.name, "base": self.base, "ft": self.ft, "adapter": self.adapter, **self.settings}


@dataclass(frozen=True)
class BoardFile:
    """The pairs, the triage settings shared by them (the typed values of those the file gives) and how the board
    runs."""

    pairs: list[PairEntry]
    settings: dict[str, Any]
    options: BoardOptions
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
        rows, block = _yaml_rows(text, file.name)
    elif suffix == ".csv":
        rows, block = _csv_rows(text, file.name), {}
    else:
        raise UserError(f"{file.name}: unknown pairs file type {suffix or '(none)'!r}", "use .yaml, .yml or .csv")
    pairs = validate_pairs(rows, file.name, base_dir=file.resolve().parent)
    settings = _given({k: v for k, v in block.items() if k in TRIAGE_SETTINGS}, f"{file.name}: settings")
    options = _board_options({k: v for k, v in block.items() if k in BOARD_OPTIONS}, file.name)
    return BoardFile(pairs=pairs, settings=settings, options=options, source=str(file.resolve()))


def _given(settings: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        return given_settings(settings, where)
    except ParamsError as exc:
        raise UserError(exc.problem, exc.fix) from None


def _board_options(block: dict[str, Any], name: str) -> BoardOptions:
    try:
        return BoardOptions.from_json(block)
    except ParamsError as exc:
        raise UserError(f"{name}: settings: {exc.problem}", exc.fix) from None


def validate_pairs(rows: list[Any], where: str = "pairs", base_dir: Path | None = None) -> list[PairEntry]:
    """Rows (dicts) to entries: unknown keys, missing fields, non-text values, bad settings and duplicate names
    refused."""
    if not rows:
        raise UserError(f"{where}: no pairs listed", FIX)
    seen: set[str] = set()
    out = []
    for index, row in enumerate(rows, start=1):
        label = f"{where}: pair {index}"
        if not isinstance(row, dict):
            raise UserError(f"{label} is not a mapping of name/base/ft", FIX)
        _no_bare_null(row, label)
        if unknown := sorted(set(map(str, row)) - set(COLUMNS) - set(TRIAGE_SETTINGS)):
            raise UserError(f"{label}: unknown field(s) {', '.join(unknown)}",
                            f"allowed: {', '.join(COLUMNS)} and the triage settings "
                            f"{', '.join(sorted(TRIAGE_SETTINGS))}")
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
        own = {k: v for k, v in row.items() if k in TRIAGE_SETTINGS and k not in COLUMNS and v is not None}
        own |= {"description": values["description"]} if values["description"] else {}
        out.append(PairEntry(values["name"], values["base"], values["ft"], values["adapter"], _given(own, label)))
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
    allowed = ", ".join(sorted(TRIAGE_SETTINGS + BOARD_OPTIONS))
    if not isinstance(settings, dict):
        raise UserError(f"{name}: 'settings' must be a mapping", f"allowed settings: {allowed}")
    _no_bare_null(settings, f"{name}: settings")
    if unknown := sorted(set(map(str, settings)) - set(TRIAGE_SETTINGS + BOARD_OPTIONS)):
        raise UserError(f"{name}: unknown setting(s) {', '.join(unknown)}", f"allowed settings: {allowed}")
    return data["pairs"], settings


def _no_bare_null(mapping: dict[Any, Any], where: str) -> None:
    """YAML reads a bare `null:` key as no key at all: the `null` setting must be quoted."""
    if None in mapping:
        raise UserError(f"{where}: a key reads as YAML's null", 'write the null setting quoted: "null": 8')


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
