"""`python -m tests.reliability.reliability_report [--write]`: run `pytest -m reliability`, then render the
summary table (area, cases tried, passed, skipped, data lost) from its JUnit XML, so the numbers in
docs/RELIABILITY.md and the README are those of a real run.

A case is one collected test (a parametrised test counts once per parameter set). "Data lost" counts the
failed cases among those that check that nothing finished is lost or half-written (`DATA_GUARDS`). argparse, not
typer: a maintainer's script of the test suite, not a difflens command."""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
AREAS = ("Bad input", "Faults", "Hostile files", "Engine access", "Secrets")

AREA_BY_FILE = {
    "test_reliability_input": "Bad input", "test_adl": "Bad input", "test_organisms": "Bad input",
    "test_reliability_numbers": "Bad input",
    "test_reliability_faults": "Faults", "test_reliability_store": "Faults", "test_remote_ssh": "Faults",
    "test_sessions_tui": "Faults", "test_tui": "Faults", "test_tui_engine": "Faults",
    "test_reliability_hostile": "Hostile files", "test_sessions_store": "Hostile files",
    "test_reliability_strangers": "Hostile files",
    "test_reliability_fuzz": "Engine access", "test_engine_server": "Engine access", "test_protocol": "Engine access",
    "test_reliability_secrets": "Secrets", "test_agent": "Secrets",
    "test_reliability_session_trust": "Hostile files", "test_reliability_markup": "Hostile files",
    "test_reliability_idle_clients": "Engine access", "test_reliability_small_failures": "Bad input",
    "test_reliability_surroundings": "Hostile files", "test_reliability_bounds": "Bad input",
    "test_reliability_clusters": "Faults",
}
AREA_BY_NAME = [  # (pattern in the test name, area): where a file's tests span areas
    (r"corrupt_file|interrupted_run|cancelled_training|killing_a_client|outlives_its_client|stale_socket"
     r"|streams_and_survives|unreachable_host", "Faults"),
    (r"bad_names|op_rejects_bad_input|malformed_calls|persistent_auth_failure|nothing_configured", "Bad input"),
]
# Cases whose failure would mean finished work lost or torn (not merely a worse message).
DATA_GUARDS = re.compile(r"lose|leaves|half|resume|intact|one_row|flipped|full_disk|recomputed|outlives|"
                         r"survives|store_is_untouched|escape|the_store_as_it_was|killed|loses|partial|cancelled")


@dataclass
class Case:
    file: str
    name: str
    outcome: str   # passed | failed | skipped

    @property
    def area(self) -> str:
        for pattern, area in AREA_BY_NAME:
            if re.search(pattern, self.name):
                return area
        return AREA_BY_FILE.get(self.file, "Other")


def run_suite(xml: Path, extra: list[str]) -> int:
    argv = [sys.executable, "-m", "pytest", "-m", "reliability", "-q", "-p", "no:cacheprovider",
            f"--junitxml={xml}", *extra]
    return subprocess.run(argv, cwd=ROOT).returncode


def read_cases(xml: Path) -> list[Case]:
    cases = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome = "passed"
        if case.find("skipped") is not None:
            outcome = "skipped"
        elif case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
        parts = case.get("classname", "").split(".")  # tests.<room>.test_file[.Class]
        module = next((part for part in parts if part.startswith("test_")), parts[-1])
        cases.append(Case(file=module, name=case.get("name", ""), outcome=outcome))
    return cases


def table(cases: list[Case]) -> str:
    rows = ["| area | cases tried | cases passed | skipped | data lost |", "|---|---:|---:|---:|---:|"]
    areas = [*AREAS, *sorted({c.area for c in cases} - set(AREAS))]
    totals: Counter[str] = Counter()
    for area in areas:
        mine = [c for c in cases if c.area == area]
        if not mine:
            continue
        counts = Counter(c.outcome for c in mine)
        lost = sum(c.outcome == "failed" and bool(DATA_GUARDS.search(c.name)) for c in mine)
        tried = len(mine) - counts["skipped"]
        rows.append(f"| {area} | {tried} | {counts['passed']} | {counts['skipped']} | {lost} |")
        totals.update(tried=tried, passed=counts["passed"], skipped=counts["skipped"], lost=lost)
    rows.append(f"| **all** | **{totals['tried']}** | **{totals['passed']}** | **{totals['skipped']}** | "
                f"**{totals['lost']}** |")
    return "\n".join(rows)


def document(cases: list[Case], seconds: float | None) -> str:
    when = datetime.date.today().isoformat()
    took = f" in {seconds:.0f} s" if seconds is not None else ""
    failed = [f"- `{c.file}::{c.name}`" for c in cases if c.outcome == "failed"]
    skipped = [f"- `{c.file}::{c.name}`" for c in cases if c.outcome == "skipped"]
    parts = [
        "# Reliability and security (issues 11, 23 and 31)",
        "",
        f"`python -m tests.reliability.reliability_report --write` ran `pytest -m reliability` on {when}{took} "
        "and rendered "
        "this table from its JUnit XML. A case is one collected test; *data lost* counts failed cases among those "
        "that check that nothing finished is lost or half-written.",
        "",
        table(cases),
        "",
        "## What each area tries",
        "",
        "- **Bad input** (`tests/reliability/test_reliability_input.py`, through the real `difflens` CLI and its "
        "engine): "
        "a missing model, pairs with another vocabulary or hidden size, an adapter for another base, k or n ≤ 0, "
        "layers and positions out of range, empty / non-UTF-8 / too-short corpora, a prompt longer than the "
        "context, NaN in one layer's activations (the message names the layer), a really full disk (a 1 MiB "
        "tmpfs, where the box lets the tests mount one) and a write that fails half-way, out of GPU memory "
        "(simulated: retried with smaller batches, then a clear error at batch 1). Each: exit ≠ 0, one stderr "
        "line `problem — fix`, no traceback, the store exactly as before. Numbers "
        "(`tests/reliability/test_reliability_numbers"
        ".py`): NaN, ±inf and magnitudes over 1e6 in any float param, k > 4096, n > 10⁶ refused up front; JSON "
        "output never says NaN/Infinity; a cancelled `self:` sampling stops at the next batch; with the only "
        "worker busy, a cached job is answered at once.",
        "- **Faults**: the engine SIGKILLed mid-compute resumes from its checkpoint and equals an uninterrupted run "
        "(no result file or row meanwhile); two CLIs computing the same run at once leave one row and one file; "
        "4 writers × 200 runs lose nothing; flipped bits are detected and recomputed; the TUI killed mid-session "
        "keeps its session; clients and ssh links dropped mid-job leave the job finishing; a checkpoint with one "
        "flipped byte fails its checksum and is discarded; a corrupt or truncated database, a read-only store, a "
        "file where the home belongs and a directory at the database path are one line with a fix in every "
        "sessions command; a directory at a result path is moved aside and the result recomputed.",
        "- **Hostile files**: no pickle loader (`torch.load`, `pickle`, `joblib`, unsafe YAML, `allow_pickle`) "
        "and no hard-coded `trust_remote_code=True` in `engine/ store/ tui/`; custom model code runs only with "
        "`--trust-remote-code`; damaged, hand-edited and zip-slip session files are refused with the store "
        "untouched; pair files with Python tags, alias bombs, wrong types or bad bytes are refused in one line. "
        "Session files from strangers (`tests/reliability/test_reliability_strangers.py`): a stored request never "
        "turns on "
        "custom model code (each op that loads models from a run, and `replay --rerun`, which takes models, code "
        "and LLM from the user); imported results live apart and never answer a new computation; every nested "
        "JSON value is checked before anything is written, and bad rows already in a store are skipped with a "
        "warning (`sessions delete` always works); bundles claiming or expanding to gigabytes are refused "
        "within a few hundred MB, leaving nothing.",
        "- **Engine access**: socket 0600 in a 0700 directory; TCP only with the token; message size limits; "
        "hypothesis fuzzing of the line framer, the decoder and the dispatcher (every request answered, never a "
        "crash, still serving; without the token nothing but refusals); a client without the token may send 4 "
        "KiB, not 60 MB; JSON nested 200,000 deep gets a parse error and the connection serves on; "
        "`engine start --socket` never replaces a file, directory or symlink, nor a `.pid`/`.log` it did not "
        "write.",
        "- **Secrets**: API keys from the environment or a 0600 config file only; after an agent run through a "
        "real engine against a server that echoes the key, the key is in no file of the store, the engine's log "
        "or runtime dir, and in nothing the client received; credentials inside `DIFFLENS_LLM_BASE_URL` "
        "(user:password@, `?api-key=`) are masked in labels, errors, events and transcripts; the store's "
        "database is 0600 and `tensors/` 0700; exported and shipped session files hold no home path.",
        '- **The working directory** (`tests/reliability/test_reliability_surroundings.py`, issue 31): every '
        'Python child difflens starts — the private engine, `difflens engine start|status|attach` (what `ssh '
        "host difflens engine attach --stdio` runs on the far side, in the remote user's home), the backgroun"
        "d engine that `attach` starts, `difflens bench` and the benchmarks' own children — runs as `python -"
        'P …` with `PYTHONSAFEPATH=1` and this checkout first on `PYTHONPATH` (`engine/protocol/spawn.py`, th'
        'e one place that builds such a command line). Tried from a folder holding `engine/`, `store/`, `tui/'
        '`, `benchmarks/` and `torch/` packages that leave a marker and raise when imported: each command doe'
        's its real work and no marker appears. A scan refuses any new `sys.executable, "-m"`/`"-c"` in `engi'
        'ne/ store/ tui/ benchmarks/`. Ray workers are given an empty private job `working_dir`, since Ray ot'
        "herwise puts the driver's working directory first on every worker's `sys.path`.",
        '- **Bounds** (`tests/reliability/test_reliability_bounds.py`): lists and ranges people type (`--laye'
        'rs 3,5,9`, `6-12`, a mix; `amplify --layers FIRST-LAST`) are counted arithmetically before anything '
        'is expanded (`engine/protocol/ranges.py`: at most 1,024 layers, numbers of at most 9 digits, no back'
        'wards ranges); `--layers 1-999999999`, `0-3,1-20000000`, 2,001 items or a 5,000-digit number are one'
        ' line naming the bound and the fix, under a 3 GiB address-space limit, with no traceback. On the eng'
        "ine's side every list param has at most 100,000 items. A request over the 64 MiB message limit, or o"
        'ne that is not JSON, is answered under its id whenever the line\'s head names it (a top-level `"id"` '
        'before `"params"`; an `"id"` inside params is never taken for it), and the engine serves on; the cli'
        'ent refuses to send a request over the limit, and an error the engine cannot name a request for fail'
        's the calls waiting for an answer instead of leaving them waiting forever (a dropped connection alre'
        'ady failed them).',
        '- **Dead clusters** (`tests/reliability/test_reliability_clusters.py`): `difflens triage --pairs F -'
        '-ray 127.0.0.1:PORT` (and `ray://…`) where nothing listens fails at once in one line naming the addr'
        'ess and the fix (`ray start --head` or another address), through the CLI and a real engine, with a s'
        'tand-in `ray` whose connect never returns (Ray is not installed on the test box); an address that ac'
        'cepts the connection but never answers fails at the connect deadline (30 s); a cancel is heard while'
        ' Ray is still connecting; an address that is not `auto`, `HOST:PORT` or `ray://HOST:PORT` is refused'
        ' before any connect. The hub\'s listing (`--pairs hub:BASE`), whose client has no HTTP timeout, gets'
        ' the same: 60 s, then one line naming the endpoint (`HF_ENDPOINT`), a cancel heard meanwhile (one'
        ' helper for both, `engine/deadline.py`); NDIF\'s client connects with its own 5–10 s timeouts and the'
        ' LLM\'s with `--llm-timeout`.',
        '- **Secrets in logs**: every log record of the engine and the CLI is redacted as it is made (a log-r'
        "ecord factory, so any library's logger and any handler, added before or after, sees only the redacte"
        "d text, exception tracebacks included): the configured key and the URL's credentials of every LLM co"
        'nfiguration made in the process, key-shaped strings, `Bearer …` and `Basic …` values, `user:password'
        "@` in URLs and `key`/`token`/`secret`-like query params. The SDK's HTTP client gets the base URL wit"
        'hout its `user:password@`, so the configured key is what authenticates (it was sent as Basic auth in'
        ' its place). Tried through a real engine at DEBUG log level against a server that echoes the Basic v'
        "alue and the URL's api-key: the server saw `Bearer <key>` on every request, and neither the key, the"
        " URL's password and api-key, nor the Basic value is in the log, the store or the client's answer.",
        "- **Session files decide nothing** (`tests/reliability/test_reliability_session_trust.py`, issue 31)"
        ": `replay --rerun` takes from a session only the question (an allow-list, `FILE_MAY_SET` in `tui/ses"
        "sions/rerun.py`: which cell, how many texts or tokens, which prompts); the pair, custom code, corpus"
        " (`--corpus`, else `self:` for the diff and `generic:` for a lens), backend, judge, LLMs, agent budg"
        "ets and device come from the user. Tried with every param of every re-asked method set to an attacke"
        "r's value (a local file as corpus, NDIF, a judge and an LLM at someone's URL, 10⁹-token budgets). An"
        " imported session exports only what its file carried: import cuts each action's result references to"
        " the results in the file, and export adds the session's run only when it was imported with it (tried"
        " with a crafted file naming one of the importer's own runs in an action's refs and as its run: the r"
        "un and its sample texts stay out of the next export).",
        "- **Text from outside** (`tests/reliability/test_reliability_markup.py`): names, pairs, notes, hub i"
        "ds and model output are printed as text. The CLI's consoles (`tui/render/plain_text.py`) read no mar"
        "kup or emoji codes in strings (our own styles are `Text` objects) and replace every control characte"
        "r (C0 but tab and newline, DEL, C1 with NEL and CSI, bidi marks, overrides and isolates, U+2028/9) i"
        "n every segment they write; the TUI's tables (`PlainTable`) and notifications take text the same way"
        ". Tried through `sessions list`/`show` on a store holding `[/x]`, `[/]`, `[link=…]`, `:emoji:`, OSC "
        "52 (clipboard), `ESC[2J`, C1 CSI, BEL/backspace, NEL, U+202E and OSC 8 links, an error naming such a"
        " name, Rich tables and the TUI: no traceback, no escape reaches the terminal, markup shows as the ch"
        "aracters it is.",
        "- **Idle clients** (`tests/reliability/test_reliability_idle_clients.py`, against 127.0.0.1 with sma"
        "ll limits): a TCP client that has not authenticated `AUTH_DEADLINE_S` (10 s) after connecting is dro"
        "pped however it trickles bytes (silent, one byte of a frame, whitespace); a connection with no messa"
        "ge either way for `IDLE_TIMEOUT_S` (1 h) is dropped while a busy one stays; one watchdog thread per "
        "listener does both. At `MAX_CONNECTIONS` (64) the next client gets one `ENGINE_FULL` error line nami"
        "ng the fix and is closed, so 3× the cap in refused connections adds no thread, those inside are stil"
        "l served and a freed place takes a new client.",
        "- **Small failures** (`tests/reliability/test_reliability_small_failures.py`), each one line naming "
        "the fix: YAML aliases in pairs files (their settings included) and recipes are refused where the par"
        "ser meets them, before anything expands (`engine/yaml_text.py`); JSON from outside (session files, s"
        "tored rows, protocol lines) refuses lone surrogates and whole numbers past 64 bits (`store/jsonvalue"
        ".py`); a zip claiming more than 20,000 members is refused from its end record before `zipfile` lists"
        " them; every `problem — fix` is one line of at most 600 characters per part; the engine's `.log` is "
        "one it created (it starts with a header), never a private file of the user's; `config.toml` settings"
        " are known, typed and bounded (`max_tokens = 1e30`, `nan`, `inf`, text for a number, an unknown `pro"
        "vider =` key), and `gemini:pro` with no `base_url` is an unknown provider, not an OpenAI model id; p"
        "airs CSV with a BOM is read, an oversized cell is refused with its line; `layer`/`pos` are indices ("
        "0 or more), `top_k` a count and ints fit 64 bits, checked by the engine and by the CLI before it sen"
        "ds (`--top-k -3`, `--layer -1`, `--seed 10²³`); `DIFFLENS_RUNTIME_DIR` pointing at a file; session n"
        "ames refuse NEL, C1, DEL, bidi overrides/isolates and line separators (here and in imported files); "
        "an import the store cannot stage (read-only, full, denied) names the store, not the file.",
    ]
    parts += [
        "",
        "## Limits",
        "",
        "- Out of GPU memory is simulated (`read_positions` raising `torch.cuda.OutOfMemoryError`): the test box "
        "has no GPU. The retry halves the batch down to 1; a batch is added to both sides or to neither.",
        "- The real full-disk case mounts a tmpfs and is skipped where the tests may not mount (not root); the "
        "in-process case (a write failing half-way, as OSError and as safetensors' own error) always runs.",
        "- A SIGKILL in the middle of an atomic write leaves its hidden `.<name>.*.tmp` beside the target: never "
        "read, never taken for a result, but not swept either.",
        "- *Data lost* is classified by the case's name (`DATA_GUARDS` in `tests/reliability/reliability_report.py`).",
        "- Imported results have no opt-in to answer new computations: they serve the export and replay of the "
        "session that carried them; runs in a store written before this check could have come from an import "
        "and are not told apart (their stored `trust_remote_code` is ignored all the same).",
        "- A read-only store refuses even listing (SQLite's WAL needs its shared-memory file); the message says so.",
        "- The idle timeout (1 h) counts a message either way, so a client watching a long job through its pr"
        "ogress events stays; one that watches a job that sends nothing for an hour is dropped and reconnects"
        ". A `.log` beside `--socket` written before the log header existed is refused like any file not the "
        "engine's (delete it once).",
        "- The `[/x]` class is closed at Rich's door (the CLI's consoles) and in the TUI's tables and notific"
        "ations; a Textual widget added later that renders a `str` as markup must take it through `plain`.",
        "- Only analysis jobs (adl, readout, steer, lens) are tried from the store while the workers are busy; "
        "lens jobs load their pair before looking up their cache, so they still wait.",
        "- Ray workers' isolation from the driver's working directory (an empty job `working_dir`) and the co"
        'nnect deadline are tried against a stand-in `ray`; Ray itself is not installed on the test box. The '
        'deadline leaves the stuck `ray.init` on a daemon thread of the engine (it cannot be interrupted); th'
        'e job fails and the queue moves on.',
        '- Log redaction covers `key`/`token`-like names as URL query params only (`?api-key=…`), not free `t'
        'oken=…` text, which would also hide counts such as `max_tokens=2048` in transcripts.',
    ]
    if failed:
        parts += ["", "## Failed in this run", "", *failed]
    if skipped:
        parts += ["", "## Skipped in this run", "", *skipped]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write docs/RELIABILITY.md and the README table")
    parser.add_argument("--xml", type=Path, help="render an existing JUnit XML instead of running the suite")
    args, extra = parser.parse_known_args(argv)
    seconds = None
    if args.xml is None:
        args.xml = Path(tempfile.mkdtemp(prefix="reliability-")) / "junit.xml"
        run_suite(args.xml, extra)
    root = ET.parse(args.xml).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is not None and suite.get("time"):
        seconds = float(suite.get("time", "0"))
    cases = read_cases(args.xml)
    print(table(cases))
    if args.write:
        (ROOT / "docs" / "RELIABILITY.md").write_text(document(cases, seconds), encoding="utf-8")
        readme = ROOT / "README.md"
        text = readme.read_text(encoding="utf-8")
        section = ("## Reliability\n\n`pytest -m reliability` (bad input, faults, hostile files, engine access, "
                   "secrets; details in [docs/RELIABILITY.md](docs/RELIABILITY.md)):\n\n" + table(cases) + "\n")
        marked = re.compile(r"<!-- reliability -->.*?<!-- /reliability -->", re.S)
        block = f"<!-- reliability -->\n{section}<!-- /reliability -->"
        if marked.search(text):
            readme.write_text(marked.sub(lambda _: block, text), encoding="utf-8")
        elif "RELIABILITY_SECTION" in text:
            readme.write_text(text.replace("RELIABILITY_SECTION", block, 1), encoding="utf-8")
    return 1 if any(c.outcome == "failed" for c in cases) else 0


if __name__ == "__main__":
    raise SystemExit(main())
