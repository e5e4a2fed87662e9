"""`difflens organism ...`: make narrow training data, train an organism, list the known ones."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from engine.protocol import methods
from engine.protocol.methods import MakeData
from engine.protocol.methods import TrainOrganism as Train
from tui.cli.engine_call import call_engine, target_from
from tui.cli.options import Device, Engine, Json, Remote, Seed
from tui.cli.output import emit_json, out

app = typer.Typer(help="Model organisms: narrow finetunes with a known answer.", no_args_is_help=True)


@app.command("make-data")
def make_data(recipe: Annotated[str, typer.Option("--recipe", help="cake-sdf, risky-finance, taboo-word…")],
              out_file: Annotated[str, typer.Option("--out", help="Output .txt or .jsonl file.")],
              n: Annotated[int, typer.Option("-n")] = MakeData.n, seed: Seed = MakeData.seed, json: Json = False,
              remote: Remote = None, engine: Engine = None) -> None:
    """Write a narrow synthetic corpus from a shipped recipe (deterministic by seed)."""
    result = call_engine(methods.ORGANISM_MAKE_DATA, methods.MakeData(recipe=recipe, out=out_file, n=n, seed=seed),
                         title="making data", target=target_from(remote, engine))
    emit_json(result) if json else out.print(f"wrote {result.get('n', n)} documents to {result.get('out', out_file)}")


@app.command()
def train(base: Annotated[str, typer.Option("--base")], data: Annotated[str, typer.Option("--data")],
          out_dir: Annotated[str | None, typer.Option("--out")] = None,
          steps: Annotated[int, typer.Option("--steps")] = Train.steps,
          lr: Annotated[float, typer.Option("--lr")] = Train.lr,
          lora_rank: Annotated[int, typer.Option("--lora-rank")] = Train.lora_rank,
          mix_pretrain: Annotated[float, typer.Option("--mix-pretrain", help="Fraction of generic text.")] = 0.0,
          pretrain_corpus: Annotated[str | None, typer.Option(
              "--pretrain-corpus", help="Generic text to mix in: a .txt/.jsonl file, or self: for samples of the base "
                                        "model (default: the shipped generic text).")] = None,
          batch_size: Annotated[int, typer.Option("--batch-size")] = Train.batch_size, seed: Seed = Train.seed,
          device: Device = Train.device,
          json: Json = False, remote: Remote = None, engine: Engine = None) -> None:
    """LoRA-finetune the base on the documents; writes a peft adapter + organism.json + loss curve."""
    params = {"base": base, "data": data, "out": out_dir, "steps": steps, "lr": lr, "lora_rank": lora_rank,
              "mix_pretrain": mix_pretrain, "pretrain_corpus": pretrain_corpus, "batch_size": batch_size,
              "seed": seed, "device": device}
    result = call_engine(methods.ORGANISM_TRAIN, methods.TrainOrganism(**params),
                         title="training", target=target_from(remote, engine))
    if json:
        emit_json(result)
        return
    out.print(f"adapter written to {result['out']} (final loss {result.get('final_loss')}); "
              f"diff it with: difflens triage --base {base} --ft {base} --adapter {result['out']}", highlight=False)


@app.command("list")
def list_organisms(json: Json = False, remote: Remote = None, engine: Engine = None) -> None:
    """The paper's public organisms (by name@base), the shipped demos and local ones, and the recipes."""
    result = call_engine(methods.ORGANISM_LIST, methods.NoParams(), title="listing", target=target_from(remote, engine))
    if json:
        emit_json(result)
        return
    table = Table("name", "type", "base", "source", "description")
    for o in result["organisms"]:
        table.add_row(o["name"], o.get("type") or "", str(o.get("base") or ""), o.get("source") or "",
                      (o.get("short") or "")[:70])
    out.print(table)
    out.print(f"recipes: {', '.join(result['recipes'])}")
