"""The command palette (Ctrl+P): every key-bound action of the current screen and the app, searchable."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode

# Cursor keys are for the keyboard; listing "Layer up" in the palette would only bury the real actions.
_NOT_IN_PALETTE = ("move(", "pick(")


class WorkbenchCommands(Provider):
    """Commands = the active bindings that have a description, so the palette and the keys never disagree."""

    def _actions(self) -> Iterator[tuple[str, str, DOMNode, str]]:
        seen: set[str] = set()
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not binding.description or binding.action.startswith(_NOT_IN_PALETTE) or binding.system:
                continue
            if binding.description in seen:
                continue
            seen.add(binding.description)
            shown = binding.key_display or self.app.get_key_display(binding)
            yield binding.description, binding.tooltip or f"key: {shown or key}", active.node, binding.action

    async def discover(self) -> Hits:
        for title, help_text, node, action in self._actions():
            yield DiscoveryHit(title, partial(self.app.run_action, action, node), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, node, action in self._actions():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self.app.run_action, action, node), help=help_text)
