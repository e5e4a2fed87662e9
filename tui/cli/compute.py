"""`difflens compute` and `difflens runs`: ADL step 1 from the command line."""

from __future__ import annotations

from rich.table import Column, Table
from rich.text import Text

from engine.protocol import methods
from engine.protocol.methods import AdlCompute as Adl
from tui.cli.engine_call import call_engine, target_from
from tui.cli.options import (
    Adapter,
    Backend,
    Base,
    BatchSize,
    Corpus,
    Device,
    DeviceMap,
    Dtype,
    Engine,
    Ft,
    Json,
    K,
    Layers,
    N,
    NdifMaxRows,
    Place,
    Remote,
    Seed,
    Sequential,
    TrustRemoteCode,
    adl_request_params,
)
from tui.cli.output import emit_json, out


def compute(base: Base, ft: Ft, adapter: Adapter = None, corpus: Corpus = Adl.corpus, n: N = Adl.n, k: K = Adl.k,
            seed: Seed = Adl.seed, layers: Layers = None, device: Device = Adl.device, dtype: Dtype = Adl.dtype,
            batch_size: BatchSize = Adl.batch_size, trust_remote_code: TrustRemoteCode = False,
            sequential: Sequential = False,
            device_map: DeviceMap = None, place: Place = None, backend: Backend = None,
            ndif_max_rows: NdifMaxRows = None, json: Json = False,
            remote: Remote = None, engine: Engine = None) -> None:
    """Compute (or fetch from the cache) the mean activation difference of a model pair."""
    params = adl_request_params(base, ft, adapter, corpus, n, k, seed, layers, device, dtype, batch_size,
                            trust_remote_code, sequential, device_map, place, backend, ndif_max_rows)
    result = call_engine(methods.ADL_COMPUTE, methods.AdlCompute(**params),
                         title="computing mean diff", target=target_from(remote, engine))
    if json:
        emit_json(result)
        return
    state = "cached" if result.cached else f"computed in {result.seconds:.1f}s"
    out.print(Text.assemble((result.run, "bold"), f"  {result.base} → {result.ft}  ({state})"))
    out.print(f"mean diff {tuple(result.shape)} = [layer, pos, d_model] over {result.n} texts "
              f"of {result.corpus}", highlight=False)
    if result.memory_plan:
        out.print(f"memory plan: {result.memory_plan}", highlight=False)
    out.print(f"file: {result.file}")


def runs(json: Json = False, remote: Remote = None, engine: Engine = None) -> None:
    """List cached ADL runs, newest first (any command taking a run accepts a unique prefix of its id)."""
    result = call_engine(methods.ADL_RUNS, methods.NoParams(), title="listing runs",
                         target=target_from(remote, engine))
    if json:
        emit_json(result)
        return
    whole = Column("run", no_wrap=True, min_width=max((len(r.run) for r in result.runs), default=3))
    table = Table(whole, "base", "finetuned", "corpus", "n", "k")  # ids whole, to be copied
    for r in result.runs:
        table.add_row(r.run, r.base, r.ft, r.corpus, str(r.n), str(r.k))
    out.print(table)
