"""`difflens tokens` and `difflens steer`: read and steer with a cached run's difference."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from engine.protocol import methods
from engine.protocol.methods import LogitLens
from engine.protocol.methods import SteerGenerate as Steer
from engine.protocol.results import PatchscopeCell
from tui.cli.engine_call import call_engine, target_from
from tui.cli.options import Backend, Engine, Json, JudgeSpec, Protocol, Remote, TrustRemoteCode
from tui.cli.output import emit_json, err, fail, out
from tui.render.report_data import layers_in_order
from tui.render.token_text import tokens_text

Layer = Annotated[int | None, typer.Option("--layer", help="Decoder layer (default: the run's report layer, "
                                                          "chosen from the evidence; see README).")]
Pos = Annotated[int | None, typer.Option("--pos", help="Read position after BOS (0-based).")]


def scale_choice(cell: PatchscopeCell) -> str:
    """How a Patchscope cell's scale was chosen, by which judge: an ungraded cell says so and selects nothing."""
    if cell.chosen_by.startswith("ungraded"):
        return f"{cell.chosen_by} — no scale chosen, every scale shown ({cell.judge or 'offline'})"
    per_sign = ", ".join(f"{sign} {scale:g}" for sign, scale in cell.best_by_sign.items())
    signs = f"; best per sign {per_sign}" if per_sign else ""
    return (f"best scale {cell.best_scale or 0:g} ({cell.judge or cell.chosen_by}{signs}); "
            f"selected: {', '.join(cell.selected) or '—'}")


def tokens(run: str, layer: Layer = None, pos: Pos = None,
           method: Annotated[str, typer.Option("--method", help="logit-lens or patchscope.")] = "logit-lens",
           source: Annotated[methods.Source, typer.Option("--source", help="Logit lens of.")] = LogitLens.source,
           head: Annotated[methods.Side | None, typer.Option(
               "--head", help="Logit lens through the base or ft model's final norm + unembedding (default: ft; "
                              "base for --source base).")] = None,
           top_k: Annotated[int, typer.Option("--top-k")] = 10, backend: Backend = None, judge: JudgeSpec = None,
           json: Json = False, trust_remote_code: TrustRemoteCode = False, remote: Remote = None,
           engine: Engine = None) -> None:
    """Top tokens of the difference: one cell with --layer/--pos, else every layer × position."""
    target = target_from(remote, engine)
    if method == "patchscope":
        scope = call_engine(methods.PATCHSCOPE, methods.Patchscope(
            run=run, layer=layer, pos=pos or 0, top_k=top_k, backend=backend, judge=judge,
            trust_remote_code=trust_remote_code), title="patchscope", target=target)
        if json:
            emit_json(scope)
            return
        out.print(f"Patchscope, layer {scope.layer} position {scope.pos}: {scale_choice(scope)}",
                  highlight=False)
        table = Table("scale", "top tokens")
        for row in scope.scales:
            marker = " ◀" if row.scale == scope.best_scale else ""
            table.add_row(f"{row.scale:g}{marker}", tokens_text(row.tokens[:top_k]))
        out.print(table)
        return
    if method != "logit-lens":
        fail(f"unknown --method {method!r} — pass logit-lens or patchscope")
    if layer is not None and pos is not None:
        cell = call_engine(methods.LOGIT_LENS, methods.LogitLens(
            run=run, layer=layer, pos=pos, top_k=top_k, source=source, head=head, backend=backend,
            trust_remote_code=trust_remote_code), title="logit lens", target=target)
        if json:
            emit_json(cell)
            return
        out.print(f"logit lens of {source} ({cell.head} head), layer {layer} position {pos}:")
        out.print(tokens_text(cell.tokens, with_probs=True))
        return
    grid = call_engine(methods.LENS_GRID, methods.LensGrid(
        run=run, source=source, head=head, top_k=top_k, layers=[layer] if layer is not None else None,
        positions=[pos] if pos is not None else None, backend=backend, trust_remote_code=trust_remote_code),
                       title="logit lens", target=target)
    if json:
        emit_json(grid)
        return
    table = Table("layer", "pos", f"logit lens of {source}, {grid.head} head (top {top_k})", show_lines=False)
    for lay, cells in layers_in_order(grid.layers):
        for p, pairs in cells.items():
            table.add_row(lay, p, tokens_text(pairs))
    out.print(table)


def component_param(text: str | None) -> dict[str, Any] | None:
    """`PCA_RESULT:N` as the op's `component` parameter."""
    if text is None:
        return None
    key, sep, index = text.rpartition(":")
    if not sep or not key or not index.isdigit():
        fail(f"cannot read --component {text!r} — pass PCA_RESULT:N (the `result` of `difflens pca --json`)")
    return {"result": key, "index": int(index)}


def steer(run: str, layer: Layer = None, pos: Annotated[int, typer.Option("--pos")] = Steer.pos,
          strength: Annotated[list[str] | None, typer.Option("--strength", help="Strength(s), or 'auto'.")] = None,
          prompt: Annotated[list[str] | None, typer.Option("--prompt", help="Prompt(s); default: shipped set.")] = None,
          samples: Annotated[int, typer.Option("--samples")] = Steer.n_samples,
          max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = Steer.max_new_tokens,
          temperature: Annotated[float, typer.Option("--temperature")] = Steer.temperature,
          side: Annotated[methods.Side, typer.Option("--side", help="The model steered.")] = Steer.side,
          backend: Backend = None, judge: JudgeSpec = None, protocol: Protocol = None,
          component: Annotated[str | None, typer.Option(
              "--component", help="Steer with principal component N of a `difflens pca` result instead of the "
                                  "mean diff: PCA_RESULT:N (auto strengths: ± the mean diff's).")] = None,
          json: Json = False, trust_remote_code: TrustRemoteCode = False,
          remote: Remote = None, engine: Engine = None) -> None:
    """Generate with α·diff added at a layer, steered beside unsteered; `--strength auto` calibrates."""
    strengths: list[float] | None = None
    if strength and strength != ["auto"]:
        try:
            strengths = [float(s) for s in strength]
        except ValueError:
            fail(f"cannot read --strength {strength} — pass numbers or 'auto'")
    params = methods.SteerGenerate(run=run, layer=layer, pos=pos, strengths=strengths, prompts=prompt or None,
                                   n_samples=samples, max_new_tokens=max_new_tokens, temperature=temperature, side=side,
                                   backend=backend, judge=judge, protocol=protocol, trust_remote_code=trust_remote_code,
                                   component=component_param(component))
    result = call_engine(methods.STEER_GENERATE, params,
                         title="steering", target=target_from(remote, engine))
    if json:
        emit_json(result)
        return
    err.print(f"layer {result.layer}, position {result.pos}, strengths {result.strengths}", highlight=False)
    if calibration := result.calibration:
        err.print(f"calibrated by {calibration.judge}" + (f", {calibration.ungraded} samples ungraded"
                                                          if calibration.ungraded else ""), highlight=False)
    table = Table("prompt", "α", "steered", "unsteered", show_lines=True)
    for s in result.samples:
        table.add_row(s.prompt, f"{s.strength or 0:g}", s.steered, s.unsteered)
    out.print(table)
