"""`python -m benchmarks [--quick] [--json] [--base B --ft F [--adapter A]]`: run every benchmark once.

argparse, not typer: `difflens bench` (tui/cli/bench.py) is the typer side; this is its torch-side child."""

from __future__ import annotations

import argparse
import json
import sys

from benchmarks.config import make_settings


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes (about 2 minutes on a 2-core CPU)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--base", help="base model (default: the embedded gemma-3-270m)")
    p.add_argument("--ft", help="finetuned model (default: demo)")
    p.add_argument("--adapter", help="peft adapter for --ft")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto: a GPU when present)")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1: steady on a shared machine)")
    p.add_argument("--n", type=_ints, help="texts for the end-to-end scaling, e.g. 256,1024,4096,16384")
    p.add_argument("-k", type=int, help="read positions (default 5)")
    p.add_argument("--batch-size", type=int, help="ADL batch size (default 32, the engine's)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if (args.base is None) != (args.ft is None):
        print("python -m benchmarks: pass --base and --ft together", file=sys.stderr)
        return 2
    import torch

    from benchmarks.report import summary, table
    from benchmarks.runner import run

    on_gpu = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    settings = make_settings(args.quick, on_gpu, base=args.base, ft=args.ft, adapter=args.adapter,
                             device=args.device, dtype=args.dtype, threads=args.threads, ns=args.n, k=args.k,
                             batch_size=args.batch_size)
    result = run(settings, lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(summary(result), indent=2) if args.json else table(result))
    if not args.json:
        print(f"saved to {result['saved_to']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
