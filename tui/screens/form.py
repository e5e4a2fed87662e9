"""A small modal form (edit a prompt, set α, describe a new run): Enter moves on and submits, Escape cancels."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


@dataclass(frozen=True)
class Field:
    """One input of a form."""

    name: str
    label: str
    value: str = ""
    placeholder: str = ""


class FormScreen(ModalScreen[dict[str, str] | None]):
    """Returns the fields' values by name, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, fields: list[Field]) -> None:
        super().__init__()
        self._title = title
        self._fields = fields

    def compose(self) -> ComposeResult:
        with Vertical(id="form"):
            yield Label(self._title, id="form-title")
            for f in self._fields:
                yield Label(f.label, classes="form-label")
                yield Input(value=f.value, placeholder=f.placeholder, id=f"field-{f.name}")
            yield Label("enter: next / submit · escape: cancel", classes="form-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        i = inputs.index(event.input)
        if i + 1 < len(inputs):
            inputs[i + 1].focus()
        else:
            self.dismiss({f.name: self.query_one(f"#field-{f.name}", Input).value for f in self._fields})

    def action_cancel(self) -> None:
        self.dismiss(None)
