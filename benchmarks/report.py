"""The printed ratio table, the `--json` summary, and where results are kept (`<store home>/bench/`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from store.atomic import write_text_atomic


def summary(r: dict[str, Any]) -> dict[str, Any]:
    """The keys every consumer may rely on, then everything measured."""
    return {"device": r["device"], "adl": {"floor_ratio": r["adl"]["ratio"]["floor_ratio"],
                                           "baseline_ratio": r["adl"]["ratio"]["baseline_ratio"], **r["adl"]},
            "steering": {"batched_ratio": r["steering"]["batched_ratio"], **r["steering"]},
            "replay": r["replay"], "peak_memory_mb": r["peak_memory_mb"],
            "triage": {"fresh_over_adl": r["triage"]["fresh_over_adl"],
                       "first_on_base_over_adl": r["triage"]["first_on_base_over_adl"],
                       "cached_seconds": r["triage"]["cached_seconds"], **r["triage"]},
            **{key: value for key, value in r.items() if key not in ("device", "adl", "steering", "replay",
                                                                      "peak_memory_mb", "triage")}}


def save(result: dict[str, Any], home: Path) -> Path:
    """Write `bench/<utc time>.json` and `bench/latest.json` under the store home."""
    folder = home / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    path = folder / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    write_text_atomic(path, text)
    write_text_atomic(folder / "latest.json", text)
    return path


def _row(rows: list[tuple[str, ...]], *cells: str) -> None:
    rows.append(cells)


def table(r: dict[str, Any]) -> str:
    """The ratio table (what the README quotes)."""
    rows: list[tuple[str, ...]] = [("step", "difflens", "reference", "ratio")]
    a = r["adl"]["ratio"]
    rate = a["texts_per_s"]
    _row(rows, f"ADL k={a['k']}, {a['texts']} texts, bs {a['batch_size']}", f"{rate['difflens']:.1f} texts/s",
         f"floor {rate['floor']:.1f} texts/s", f"{a['floor_ratio']:.2f}x floor")
    _row(rows, f"  vs notebook ({a['baseline_texts']} texts, 64 tok)", "",
         f"baseline {rate['baseline']:.2f} texts/s", f"{a['baseline_ratio']:.1f}x baseline")
    for item in r["adl"]["by_k"]:
        _row(rows, f"ADL k={item['k']}, {item['texts']} texts", f"{item['texts_per_s']['difflens']:.1f} texts/s",
             f"floor {item['texts_per_s']['floor']:.1f} texts/s", f"{item['floor_ratio']:.2f}x floor")
    for item in r["adl"]["by_batch"]:
        _row(rows, f"ADL batch size {item['batch_size']}, {item['texts']} texts",
             f"{item['texts_per_s']['difflens']:.1f} texts/s",
             f"+{item['overhead_ms_per_trace']:.1f} ms/trace over floor",
             f"{item['floor_ratio']:.2f}x floor")
    first = r["adl"]["by_n"][0]["texts_per_s"] if r["adl"]["by_n"] else 0
    for item in r["adl"]["by_n"]:
        _row(rows, f"compute_adl end to end, n={item['n']}", f"{item['texts_per_s']:.1f} texts/s",
             f"{item['seconds']:.1f} s", f"{item['texts_per_s'] / first:.2f}x n={r['adl']['by_n'][0]['n']}")
    lens, patch = r["readouts"]["logit_lens"], r["readouts"]["patchscope"]
    _row(rows, f"logit lens top-100, {lens['cells']} cells", f"{lens['ms_per_cell']:.2f} ms/cell",
         f"unembed {lens['floor_ms_per_cell']:.2f} ms/cell", f"{lens['floor_ratio']:.2f}x floor")
    _row(rows, f"Patchscope L{patch['layer']}, {patch['cells']} cells x {patch['scales']} scales x "
               f"{patch['prompts']} prompts",
         f"{patch['ms_per_cell']:.0f} ms/cell", "bare forward of the rows", f"{patch['floor_ratio']:.2f}x floor")
    s = r["steering"]
    _row(rows, f"steering {s['rows']} rows (a x prompt), {s['max_new_tokens']} tok",
         f"{s['batched']['tokens_per_s']:.1f} tok/s", f"one call each {s['one_by_one']['tokens_per_s']:.1f} tok/s",
         f"{s['batched_ratio']:.1f}x one-by-one")
    _row(rows, "", "", f"bare generate {s['bare_generate']['tokens_per_s']:.1f} tok/s",
         f"{s['floor_ratio']:.2f}x floor")
    _row(rows, f"sampled generate (T {s['temperature']:g}), top-k draw",
         f"{s['sampled_top_k_draw']['tokens_per_s']:.1f} tok/s",
         f"transformers' draw {s['sampled_transformers_draw']['tokens_per_s']:.1f} tok/s",
         f"{s['sampler_ratio']:.1f}x transformers")
    p = r["replay"]
    _row(rows, "replay first paint (demo session)", f"{p['first_paint_s']:.2f} s",
         f"data {p['data_paint_s']:.2f} s, imports {p['import_s']:.2f} s", "")
    t = r["triage"]
    _row(rows, f"triage, first on its base ({t['first_on_base']}, null included)",
         f"{t['first_on_base_seconds']:.0f} s",
         f"its ADL compute {t['first_on_base_adl_compute_seconds']:.1f} s", f"{t['first_on_base_over_adl']:.1f}x ADL")
    _row(rows, "triage, fresh on a seen base (CLI, n=256, loads included)", f"{t['fresh_seconds']:.0f} s",
         f"cold ADL compute {t['adl_compute_seconds']:.1f} s (its own {t['own_adl_compute_seconds']:.1f} s)",
         f"{t['fresh_over_adl']:.1f}x ADL")
    w = t["tui_cached"]
    _row(rows, "cached report: triage --json (CLI)", f"{t['cached_seconds']:.2f} s",
         "fresh process, private engine", "" if t["cached_hit"] else "NOT a cache hit")
    _row(rows, "cached report: TUI first paint of the run", f"{w['total_s']:.2f} s",
         f"mounted {w['first_paint_s']:.2f} s, imports {w['import_s']:.2f} s", "")
    e = r["engine"]
    _row(rows, "engine.status round trip", f"unix {e['unix']['median_ms']:.2f} ms",
         f"stdio {e['stdio']['median_ms']:.2f} ms", "median")
    _row(rows, "engine ready (process start)", f"unix {e['unix']['engine_start_s']:.1f} s",
         f"stdio {e['stdio']['engine_start_s']:.1f} s", "")
    load = r["load"]
    cold = load.get("cold")
    _row(rows, "model load (base)", f"cached {load['warm']['load_s']:.1f} s",
         f"cold GGUF {cold['total_s']:.1f} s" if cold else "cold: skipped",
         f"{cold['total_s'] / load['warm']['load_s']:.0f}x" if cold else "")
    m = r["memory"]
    _row(rows, f"ADL peak RSS, {m['n']} texts{' (GPU alloc)' if m['gpu'] else ''}",
         f"sequential {m['sequential_mb']:.0f} MB", f"joint {m['joint_mb']:.0f} MB",
         f"{m['sequential_mb'] / m['joint_mb']:.2f}x joint")
    b = r["board"]
    _row(rows, f"board ADL, {b['adapters']} adapters x {b['n']} texts", f"one base {b['shared_s']:.1f} s",
         f"pairwise {b['pairwise_s']:.1f} s", f"{b['speedup']:.2f}x pairwise")
    _row(rows, f"board peak {'GPU alloc' if b['gpu'] else 'RSS'}", f"one base {b['shared_mb']:.0f} MB",
         f"one pair {b['single_pair_mb']:.0f} MB", f"{b['memory_ratio']:.2f}x one pair")
    tr = r["trajectory"]
    _row(rows, f"trajectory, {tr['steps']} steps x {tr['n']} texts, null {tr['null']}",
         f"one trajectory {tr['trajectory_s']:.1f} s", f"{tr['steps']} triages {tr['separate_s']:.1f} s",
         f"{tr['separate_over_trajectory']:.2f}x faster")
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    peaks = ", ".join(f"{name} {mb:.0f}" for name, mb in r["peak_memory_mb"].items())
    footer = f"total wall time {r['wall_s']:.0f} s (1-min load average at the end {r['load_avg_end']:.1f})"
    return "\n".join([f"difflens bench — {r['device']}", f"pair {r['pair']}", "", *lines, "",
                      f"peak memory (MB): {peaks}", footer])
