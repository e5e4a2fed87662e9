"""The door is typed both ways: the type checker refuses a call with another method's params, and a result is the
method's own type (mypy run on small snippets, as CI's `make lint` runs it on the code)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[2]

HEADER = """
from engine.protocol import methods
from tui.client.base import EngineClient


async def ask(client: EngineClient) -> None:
"""


def _check(body: str) -> tuple[str, int]:
    code = HEADER + textwrap.indent(textwrap.dedent(body), "    ")
    # the project's config names its packages, which `-c` may not be given with: strict mode on the snippet alone
    stdout, stderr, status = api.run(["--config-file=", "--strict", "--follow-imports=silent", "--no-error-summary",
                                      "--cache-dir", str(ROOT / ".mypy_cache"), "-c", code])
    return stdout + stderr, status


def test_a_call_with_another_methods_params_fails_the_type_check() -> None:
    report, status = _check("""
        await client.ask(methods.LOGIT_LENS, methods.SteerGenerate(run="r"))
    """)
    errors = [line for line in report.splitlines() if ": error:" in line]
    # invariant in its params, the method admits no P that both LogitLens and SteerGenerate are
    assert status == 1 and len(errors) == 1 and 'type parameter "P" of "ask"' in errors[0], report


def test_a_result_is_the_methods_own_type_and_a_wrong_choice_fails() -> None:
    report, status = _check("""
        cell = await client.ask(methods.LOGIT_LENS, methods.LogitLens(run="r", source="base"))
        tokens: list[object] = cell.tokens
        steered = await client.ask(methods.STEER_GENERATE, methods.SteerGenerate(run="r", side="ft"))
        prompts = [s.prompt for s in steered.samples]
        print(tokens, prompts, cell.samples)
        methods.LogitLens(run="r", source="everything")
    """)
    assert status == 1, report
    errors = [line for line in report.splitlines() if ": error:" in line]
    assert len(errors) == 2, report  # only the two wrong lines
    assert '"LensCell" has no attribute "samples"' in errors[0] and "'everything'" in errors[1], report
