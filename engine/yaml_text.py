"""YAML from files a user hands us, read without aliases.

`*alias` references let a few hundred bytes expand into millions of values (each level multiplies the last), and
they expand inside the parser, before any size check could see them. No file difflens reads needs them, so an
alias is refused where the parser meets it: nothing is expanded, and the error names the line.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.nodes import Node

from engine.errors import UserError


class _NoAliasLoader(yaml.SafeLoader):
    """The safe loader (no Python tags), refusing `*alias` nodes before they are expanded."""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            raise ComposerError(None, None, "YAML aliases (*name) are not accepted", self.peek_event().start_mark)
        return super().compose_node(parent, index)


def load_yaml(text: str, name: str) -> Any:
    """The parsed YAML `text` of file `name`; bad syntax, Python tags and aliases are one `UserError` line."""
    loader = _NoAliasLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "a syntax error"
        if "aliases" in problem:
            raise UserError(f"{name}: YAML alias{where} ({problem})", "write the values out in full") from None
        raise UserError(f"{name}: not valid YAML{where} ({problem})", "fix the YAML syntax") from None
    finally:
        loader.dispose()
