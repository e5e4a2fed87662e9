"""`difflens organism ...`: make narrow training data, train an organism, list the known ones."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from engine.protocol import methods
from engine.protocol.methods import MakeData
from engine.protocol.methods import TrainOrganism as Train
from engine.protocol.results import Organism, Organisms
from tui.cli.engine_call import call_engine, target_from
from tui.cli.options import Device, Engine, Json, Remote, Seed
from tui.cli.output import emit_json, fail, out

SOURCE_TITLES = {"shipped": "shipped demos", "local": "local organisms (organism train)",
                 "registry": "the paper's public organisms (use as name@base)"}
TYPE_WIDTH, BASE_WIDTH = 10, 12  # cut there: an 80-column terminal keeps room for the description
MIN_DESCRIPTION = 20

app = typer.Typer(help="Model organisms: narrow finetunes with a known answer.", no_args_is_help=True)


@app.command("make-data")
def make_data(recipe: Annotated[str, typer.Option("--recipe", help="cake-sdf, risky-finance, taboo-word…")],
              out_file: Annotated[str, typer.Option("--out", help="Output .txt or .jsonl file.")],
              n: Annotated[int, typer.Option("-n")] = MakeData.n, seed: Seed = MakeData.seed, json: Json = False,
              remote: Remote = None, engine: Engine = None) -> None:
    """Write a narrow synthetic corpus from a shipped recipe (deterministic by seed)."""
    result = call_engine(methods.ORGANISM_MAKE_DATA, methods.MakeData(recipe=recipe, out=out_file, n=n, seed=seed),
                         title="making data", target=target_from(remote, engine))
    emit_json(result) if json else out.print(f"wrote {result.n or n} documents to {result.out or out_file}")


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
          checkpoints: Annotated[int, typer.Option(
              "--checkpoints", help="Keep N adapter checkpoints evenly along training (for difflens trajectory).")
          ] = Train.checkpoints,
          json: Json = False, remote: Remote = None, engine: Engine = None) -> None:
    """LoRA-finetune the base on the documents; writes a peft adapter + organism.json + loss curve."""
    params = methods.TrainOrganism(base=base, data=data, out=out_dir, steps=steps, lr=lr, lora_rank=lora_rank,
                                   mix_pretrain=mix_pretrain, pretrain_corpus=pretrain_corpus, batch_size=batch_size,
                                   seed=seed, device=device, checkpoints=checkpoints)
    result = call_engine(methods.ORGANISM_TRAIN, params,
                         title="training", target=target_from(remote, engine))
    if json:
        emit_json(result)
        return
    out.print(f"adapter written to {result.out} (final loss {result.final_loss}); "
              f"diff it with: difflens triage --base {base} --ft {base} --adapter {result.out}", highlight=False)


def organism_table(title: str, organisms: list[Organism], width: int) -> Table:
    """One line per organism at any terminal `width`: names whole, the rest cut with an ellipsis, never wrapped
    (`organism show NAME` and `--json` give everything whole)."""
    name_width = max(len(o.name) for o in organisms)
    widths = [name_width, TYPE_WIDTH, BASE_WIDTH]
    gaps = 2 * len(widths)
    table = Table(title=title, title_justify="left", title_style="bold", box=None, pad_edge=False,
                  header_style="bold")
    for name, column_width in zip(("name", "type", "base"), widths, strict=True):
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=column_width)
    table.add_column("description", no_wrap=True, overflow="ellipsis",
                     max_width=max(MIN_DESCRIPTION, width - sum(widths) - gaps))
    for o in organisms:
        table.add_row(o.name, o.type or "", o.bases_text(), o.short or "")
    return table


def _organisms(remote: str | None, engine: str | None) -> Organisms:
    return call_engine(methods.ORGANISM_LIST, methods.NoParams(), title="listing", target=target_from(remote, engine))


@app.command("list")
def list_organisms(json: Json = False, remote: Remote = None, engine: Engine = None) -> None:
    """The paper's public organisms (by name@base), the shipped demos and local ones, and the recipes."""
    result = _organisms(remote, engine)
    if json:
        emit_json(result)
        return
    by_source: dict[str, list[Organism]] = {}
    for o in result.organisms:
        by_source.setdefault(o.source or "other", []).append(o)
    for source, organisms in by_source.items():
        out.print(organism_table(SOURCE_TITLES.get(source, source), organisms, out.width), "")
    out.print(f"recipes: {', '.join(result.recipes)}", highlight=False)
    out.print(Text("one in full: difflens organism show NAME", style="dim"))


@app.command()
def show(name: Annotated[str, typer.Argument(help="An organism's name, as `difflens organism list` shows it.")],
         json: Json = False, remote: Remote = None, engine: Engine = None) -> None:
    """One organism in full: its description, base(s), where it comes from and where it lives."""
    found = [o for o in _organisms(remote, engine).organisms if o.name == name]
    if not found:
        fail(f"no organism {name!r} — see `difflens organism list`")
    if json:
        emit_json(found[0])
        return
    for key, value in found[0].to_json().items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        out.print(Text.assemble((f"{key}: ", "bold"), shown))
