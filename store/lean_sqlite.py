"""`sqlite_utils` imported without pandas: `sqlite_utils.db` imports pandas whenever it is installed, only to
map `pd.Timestamp` columns (the store writes none), and that import costs 1–2 s in every CLI, TUI and engine
process here. Import sqlite_utils from this module."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING

__all__ = ["sqlite_utils"]


def _without_pandas() -> ModuleType:
    if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
        return importlib.import_module("sqlite_utils")
    sys.modules["pandas"] = None  # type: ignore[assignment]  # `import pandas` raises ImportError, which it handles
    try:
        return importlib.import_module("sqlite_utils")
    finally:
        del sys.modules["pandas"]  # pandas stays importable for whoever needs it (datasets)


if TYPE_CHECKING:
    import sqlite_utils  # the checker reads the real module's types
else:
    sqlite_utils = _without_pandas()
