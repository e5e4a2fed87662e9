"""The README's workbench picture is what the script makes from the shipped session today."""

from __future__ import annotations

import pytest

from tui.cli.screenshot import OUTPUT, SESSION, screenshot


@pytest.mark.asyncio
async def test_committed_workbench_screenshot_matches_the_script() -> None:
    made = await screenshot(SESSION)
    assert made.startswith("<svg") and "cookbook" in made and "calibrated" in made
    current = OUTPUT.read_text(encoding="utf-8") == made  # a bool: pytest's diff of two 170 kB strings takes minutes
    assert current, (
        "docs/images/workbench.svg is stale: run `python -m tui.cli.screenshot` and commit it")
