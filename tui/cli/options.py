"""Options shared by many commands (one definition each)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from engine.protocol import methods
from engine.protocol.params import ParamsError
from engine.protocol.ranges import MAX_LAYERS, int_list
from tui.cli.output import fail

Json = Annotated[bool, typer.Option("--json", help="Emit machine-readable JSON on stdout.")]
Remote = Annotated[str | None, typer.Option("--remote", help="Run on the engine of user@host over ssh.")]
Engine = Annotated[str | None, typer.Option("--engine", help="Engine target: unix:PATH, tcp:HOST:PORT, ssh:USER@HOST.")]
Base = Annotated[str, typer.Option("--base", help="Base model: HF id, directory, .gguf file or gemma-3-270m.")]
Ft = Annotated[str, typer.Option("--ft", help="Finetuned model: HF id, directory, a shipped organism ('demo', "
                                              "'demo-overfit', 'demo-em', 'demo-taboo'), organism:NAME@BASE.")]
Adapter = Annotated[str | None, typer.Option("--adapter", help="peft adapter directory applied to --ft.")]
Corpus = Annotated[str, typer.Option("--corpus", help="self: (samples of the base), chat: (generic "
                                                      "questions answered by the base, read around the answer), "
                                                      "generic:, recipe:NAME, a .txt/.jsonl/.parquet file, or "
                                                      "hf:ORG/NAME.")]
N = Annotated[int, typer.Option("-n", help="Number of texts.")]
K = Annotated[int, typer.Option("-k", help="Tokens read after BOS.")]
Seed = Annotated[int, typer.Option("--seed")]
Layers = Annotated[str | None, typer.Option("--layers", help="Layers, e.g. 3,5,9 or 6-12 (default: all).")]
Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
Dtype = Annotated[str, typer.Option("--dtype", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16.")]
BatchSize = Annotated[int, typer.Option("--batch-size")]
Sequential = Annotated[bool, typer.Option("--sequential", help="Run one model after the other (half the memory).")]
TrustRemoteCode = Annotated[bool, typer.Option("--trust-remote-code", help="Allow custom model code from the hub.")]
Backend = Annotated[methods.Backend | None, typer.Option(
    "--backend", help="local, or ndif: run the traces on NDIF (needs NDIF_API_KEY; see docs/NDIF.md).")]
DeviceMap = Annotated[str | None, typer.Option(
    "--device-map", help="Shard over GPUs: auto, balanced, sequential or a JSON map; per side: base=balanced,ft=auto.")]
Place = Annotated[str | None, typer.Option("--place", help="A device per model, e.g. base=cuda:0,ft=cuda:1.")]
NdifMaxRows = Annotated[int | None, typer.Option("--ndif-max-rows", help="Rows per NDIF request (default 32).")]
JudgeSpec = Annotated[str | None, typer.Option(
    "--judge", help="Judge of coherence, Patchscope scale and token relevance: openai:MODEL, anthropic:MODEL, "
                    "local:SPEC or offline (default: DIFFLENS_JUDGE, then the judge table of config.toml, "
                    "else offline).")]
Protocol = Annotated[methods.Protocol | None, typer.Option(
    "--protocol", help="Strength calibration: default (grid, α ≤ 4, few samples) or paper (bisection on [0, 100], "
                       "12 steps per prompt, 10 samples × 128 tokens at T = 1.2; needs a judge).")]


def parse_layers(text: str | None) -> list[int] | None:
    """`3,5,9` or `6-12` or a mix (counted before it is expanded); None for all layers."""
    if not text:
        return None
    try:
        return int_list(text, "--layers", most=MAX_LAYERS)
    except ParamsError as exc:
        fail(str(exc))


def adl_request_params(base: str, ft: str, adapter: str | None, corpus: str, n: int, k: int, seed: int,
                       layers: str | None, device: str, dtype: str, batch_size: int, trust_remote_code: bool,
                       sequential: bool = False, device_map: str | None = None, place: str | None = None,
                       backend: str | None = None, ndif_max_rows: int | None = None) -> dict[str, Any]:
    """The JSON params of an ADL request, as every computing command sends them."""
    return {"base": base, "ft": ft, "adapter": adapter, "corpus": corpus, "n": n, "k": k, "seed": seed,
            "layers": parse_layers(layers), "device": device, "dtype": dtype, "batch_size": batch_size,
            "trust_remote_code": trust_remote_code, "sequential": sequential, "device_map": device_map,
            "place": place, "backend": backend, "max_request_rows": ndif_max_rows}
