"""The UI state a session keeps (selected cell, pane settings, statuses) and how it is put back.

Results are not part of it: replay re-asks for them through the session client, and the same fill functions
paint them. Only what the user chose (cursor, metric, lens source, Patchscope scale, α, prompts) and the pane
status lines are saved here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from engine.protocol import methods
from engine.protocol.params import ParamsError
from tui.state import (
    SteerMemory,
    SteerState,
    TokensState,
    WorkbenchModel,
    remember_shown,
    round_alpha,
    with_calibrated,
    with_choice,
)


def ui_snapshot(model: WorkbenchModel, show_agent: bool = False) -> dict[str, Any]:
    """The model's user-chosen parts as JSON."""
    h, t, s, a = model.heat, model.tokens, model.steer, model.agent
    return {
        "run": model.pair.run if model.pair else "",
        "heat": {"row": h.row, "pos": h.pos, "metric": h.metric, "include_pos0": h.include_pos0},
        "tokens": {"source": t.source, "scale_index": t.scale_index,
                   "patch_follows": t.patch_status != TokensState.patch_status},
        "steer": {"prompts": list(s.prompts), "selected": s.selected, "alpha": s.alpha,
                  "alpha_from": s.alpha_from, "calibrated": s.calibrated,
                  "layer": s.layer, "pos": s.pos, "status": s.status},
        "agent": {"status": a.status, "note": a.note},
        "show_agent": show_agent,
    }


def cell(ui: dict[str, Any]) -> dict[str, Any]:
    """Where a note was taken: the run and the selected cell."""
    return {"run": ui.get("run", ""), **{k: ui.get("heat", {}).get(k) for k in ("row", "pos")},
            "layer": ui.get("steer", {}).get("layer")}


def apply_heat_and_source(model: WorkbenchModel, ui: dict[str, Any]) -> None:
    """Cursor, metric, position-0 rule and lens source (before the cell's readouts are asked for)."""
    heat = ui.get("heat") or {}
    h = model.heat
    if h.layers:
        row = max(0, min(len(h.layers) - 1, int(heat.get("row", h.row))))
        pos = max(0, min(h.k - 1, int(heat.get("pos", h.pos))))
        metric = heat.get("metric", h.metric)
        model.heat = replace(h, row=row, pos=pos, metric=metric if metric in h.metrics else h.metric,
                             include_pos0=bool(heat.get("include_pos0", h.include_pos0)))
    source = (ui.get("tokens") or {}).get("source", model.tokens.source)
    model.tokens = replace(model.tokens, layer=model.heat.layer, pos=model.heat.pos, source=source)


def apply_steer_settings(model: WorkbenchModel, ui: dict[str, Any]) -> None:
    """α, prompts, selection, calibrated α, the cell steering follows and its status line."""
    steer = ui.get("steer")
    if not steer:
        model.steer = replace(model.steer, layer=model.heat.layer, pos=model.heat.pos)
        return
    calibrated = steer.get("calibrated")
    model.steer = replace(model.steer, prompts=tuple(str(p) for p in steer.get("prompts") or ()),
                          selected=int(steer.get("selected", 0)), alpha=float(steer.get("alpha", model.steer.alpha)),
                          alpha_from=str(steer.get("alpha_from", "you")),  # older sessions: α as the user set it
                          calibrated=None if calibrated is None else float(calibrated),
                          layer=steer.get("layer"), pos=steer.get("pos"),
                          status=str(steer.get("status", model.steer.status)), streaming=False)


def apply_agent_settings(model: WorkbenchModel, ui: dict[str, Any]) -> None:
    agent = ui.get("agent")
    if agent:
        model.agent = replace(model.agent, status=str(agent.get("status", "")), note=str(agent.get("note", "")))


def apply_scale(model: WorkbenchModel, ui: dict[str, Any]) -> None:
    """The Patchscope scale the user picked (after the Patchscope answer is in)."""
    index = (ui.get("tokens") or {}).get("scale_index")
    if index is not None and model.tokens.scales:
        model.tokens = replace(model.tokens, scale_index=int(index))


def recall_recorded(memory: SteerMemory, actions: Iterable[dict[str, Any]], steer: SteerState) -> SteerMemory:
    """Every recorded calibration and steering result, by cell and α, so moving onto a recorded cell (or back)
    paints what was recorded there; the saved view's own cell keeps its α (`steer`, as put back)."""
    for action in actions:
        if action.get("result") is None:
            continue
        try:
            if action["method"] == methods.STEER_CALIBRATE.name:
                asked = methods.SteerCalibrate.from_json(action["params"])
                if isinstance(asked.layer, int):
                    strength = methods.STEER_CALIBRATE.result.from_json(action["result"]).strength
                    memory = with_calibrated(memory, {(asked.layer, asked.pos): strength})
            elif action["method"] == methods.STEER_GENERATE.name:
                steered = methods.SteerGenerate.from_json(action["params"])
                if isinstance(steered.layer, int) and steered.strengths and len(steered.strengths) == 1:
                    cell = (steered.layer, steered.pos)
                    alpha = round_alpha(steered.strengths[0])
                    result = methods.STEER_GENERATE.result.from_json(action["result"])
                    memory = remember_shown(memory, (*cell, alpha, tuple(steered.prompts or ())), result)
                    memory = with_choice(memory, cell, alpha)
        except ParamsError:  # a recorded call that no longer reads (an older difflens): replay leaves it out
            continue
    if steer.layer is not None and steer.pos is not None and steer.alpha_from == "you":
        memory = with_choice(memory, (steer.layer, steer.pos), steer.alpha)
    return memory
