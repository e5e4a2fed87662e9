"""The pair bar: which pair and run settings, the engine (where, device, memory), the newest job's progress."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from rich.console import Group, RenderableType
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from tui.progress_text import eta_text
from tui.state import EngineView, JobView, PairInfo


@dataclass(frozen=True)
class PairBarView:
    """What the bar shows: the open pair (if any) and the engine."""

    pair: PairInfo | None = None
    engine: EngineView = field(default_factory=EngineView)


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def job_text(job: JobView, width: int = 16) -> Text:
    """`computing ADL ▕████░░░░▏ 40/200 ETA 12s (x cancels)`."""
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append(job.label, style="bold yellow")
    if job.total:
        frac = max(0.0, min(1.0, job.done / job.total))
        filled = round(frac * width)
        out.append(" ▕")
        out.append("█" * filled, style="yellow")
        out.append("░" * (width - filled), style="dim")
        out.append(f"▏ {job.done}/{job.total}")
    elif job.done:
        out.append(f" {job.done}…")
    else:
        out.append(" …")
    if job.eta_s is not None:
        out.append(f" {eta_text(job.eta_s)}")
    if job.message:
        out.append(f" {job.message}", style="dim")
    if job.running > 1:
        out.append(f" (+{job.running - 1} more)", style="dim")
    out.append("  x cancels", style="dim")
    return out


class PairBar(Widget):
    """Two lines at the top of every screen."""

    view: reactive[PairBarView] = reactive(PairBarView)

    def on_mount(self) -> None:
        """A bar on a screen opened later starts from the app's engine view (else it says "connecting…" until
        the engine view next changes, which may be never)."""
        engine = getattr(self.app, "engine_view", None)
        if isinstance(engine, EngineView):
            self.view = replace(self.view, engine=engine)

    def watch_view(self) -> None:
        self.refresh()

    def render(self) -> RenderableType:
        pair, engine = self.view.pair, self.view.engine
        top = Text(no_wrap=True, overflow="ellipsis")
        if pair is None:
            top.append("difflens", style="bold")
            top.append("  no run open", style="dim")
        else:
            top.append(pair.base, style="bold")
            top.append(" → ")
            top.append(pair.ft, style="bold magenta")
            top.append(f"   {pair.corpus} n={pair.n} k={pair.k}", style="dim")
            top.append(f"   run {pair.run[:10]}", style="dim")
        bottom = Text(no_wrap=True, overflow="ellipsis")
        if engine.lost:
            bottom.append("engine lost", style="bold red")
            bottom.append("  ctrl+r reconnects  ", style="red")
        elif not engine.connected:
            bottom.append(engine.description, style="dim")
            bottom.append("  ")
        else:
            bottom.append("engine ", style="dim")
            bottom.append(engine.description)
            if engine.device:
                bottom.append(f" · {engine.device}")
            if engine.model_bytes:
                bottom.append(f" · {_size(engine.model_bytes)} loaded", style="dim")
            bottom.append("  ")
        if engine.job is not None:
            bottom.append_text(job_text(engine.job))
        return Group(top, bottom)
