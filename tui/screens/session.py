"""The workbench opened on a saved session: its run, its UI state, then its last steering and agent answers.

Every result is asked for through the app's link exactly as the workbench asked when it was recorded, so the
session client answers from the recording and the same fill functions paint the same panes.
"""

from __future__ import annotations

from typing import Any

from textual import work

from engine.protocol import methods
from tui.link import EngineLink
from tui.messages import PatchscopeReady, SummaryReady
from tui.screens.workbench import WorkbenchScreen
from tui.sessions.client import SessionClient
from tui.sessions.source import SessionSource
from tui.sessions.view import (
    apply_agent_settings,
    apply_heat_and_source,
    apply_scale,
    apply_steer_settings,
    recall_recorded,
)
from tui.state import Start, apply_agent_event, apply_agent_result, apply_steer_result, apply_summary


class SessionWorkbench(WorkbenchScreen):
    """A `WorkbenchScreen` that puts a session's view back once its run's summary is in."""

    def __init__(self, source: SessionSource, link: EngineLink) -> None:
        super().__init__(Start(run=source.run), link)
        self.source = source
        self._pending_scale = True
        self._restored = False

    def on_summary_ready(self, message: SummaryReady) -> None:
        if self._restored:
            return  # the workbench's own handler (called next) repaints a reloaded run
        message.prevent_default()
        self._restored = True
        ui = self.source.ui
        apply_summary(self.model, message.summary)
        apply_heat_and_source(self.model, ui)
        apply_steer_settings(self.model, ui)
        apply_agent_settings(self.model, ui)
        self.steering.memory = recall_recorded(self.steering.memory, self.source.actions, self.model.steer)
        self._patch_follows = bool((ui.get("tokens") or {}).get("patch_follows"))
        if ui.get("show_agent"):
            self.add_class("-show-agent")
        self._show()
        self._refetch_cell()
        self.restore_lower()

    def unanswered_text(self) -> str:
        """A replay with no engine can only show what was recorded."""
        client = self.link.client
        if isinstance(client, SessionClient) and client.live is None:
            return "not recorded in this session"
        return super().unanswered_text()

    def on_patchscope_ready(self, message: PatchscopeReady) -> None:
        message.prevent_default()
        super().on_patchscope_ready(message)
        if self._pending_scale and self.model.tokens.scales:
            self._pending_scale = False
            apply_scale(self.model, self.source.ui)
            self._show()

    @work(group="restore", exclusive=True, exit_on_error=False)
    async def restore_lower(self) -> None:
        """The last steering samples and agent run, asked for with their recorded params."""
        last = self.source.last
        if steer := last.get(methods.STEER_GENERATE.name):
            steered = await self.link.job("steering", methods.STEER_GENERATE,
                                          methods.SteerGenerate.from_json(steer["params"]))
            if steered is not None:
                settings = self.model.steer
                self.model.steer = apply_steer_result(settings, steered)
                apply_steer_settings(self.model, self.source.ui)
        if agent := last.get(methods.AGENT_RUN.name):
            def on_event(event: dict[str, Any]) -> None:
                self.model.agent = apply_agent_event(self.model.agent, event.get("event", event))

            answered = await self.link.job("agent", methods.AGENT_RUN, methods.AgentRun.from_json(agent["params"]),
                                           on_partial=on_event)
            if answered is not None:
                self.model.agent = apply_agent_result(self.model.agent, answered)
                apply_agent_settings(self.model, self.source.ui)
        self._show()
