"""What `--protocol` sets in a pair's report, defined once: `default` (difflens's everyday report) and `paper`
(the reference's knobs, science-of-finetuning/diffing-toolkit's activation_difference_lens; docs/paper-protocol.md
lists every knob with its source file and why the default differs).

The agent's side of a protocol (ask_model, budgets, grader repeats) is `engine.agent.protocols`; the calibration
search is `CalibrationSettings.paper`; this module ties them into one report."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from engine.adl.request import AdlRequest
from engine.agent.run_environment import SteeringSettings
from engine.errors import UserError
from engine.protocol.methods import PAPER_SAMPLE_TEMPERATURE
from engine.results.calibrated_steering import PROTOCOLS, CalibrationSettings
from engine.steering.steering_prompts import default_prompts, reference_prompts


@dataclass(frozen=True)
class ReportProtocol:
    """`layer` "middle" = relative depth 0.5 always (else the user's `--layer`, or the evidence's pick);
    `final` the steering samples made at the calibrated strengths (None: the triage's own prompts and length at
    the calibration's sample temperature); `from_bos` the run reads positions from the BOS token on (the
    reference's position 0), else the k tokens after it."""

    name: str
    layer: Literal["middle"] | None
    final: SteeringSettings | None
    from_bos: bool = False

    def calibration(self, device: str, max_strength: float | None = None) -> CalibrationSettings:
        return CalibrationSettings.for_device(device, protocol=self.name, max_strength=max_strength)

    def report_layer(self, requested: int | Literal["middle"] | None) -> int | Literal["middle"] | None:
        """The layer the report reads: the protocol's, refusing another one the user asked for."""
        if self.layer is None or requested in (None, self.layer):
            return self.layer if requested is None else requested
        raise UserError(f"--protocol {self.name} reads relative depth 0.5, not layer {requested}",
                        "drop --layer, or use the default protocol")

    def run_request(self, request: AdlRequest) -> AdlRequest:
        """The ADL run the report reads: the user's, with the protocol's positions."""
        return replace(request, from_bos=True) if self.from_bos else request

    def final_samples(self, steering: SteeringSettings, n_prompts: int, temperature: float) -> SteeringSettings:
        """The report's steering samples: the protocol's set, or `steering` on the first `n_prompts` prompts."""
        if self.final is not None:
            return self.final
        return replace(steering, prompts=list(default_prompts())[:n_prompts], temperature=temperature)


REPORT_PROTOCOLS = {
    "default": ReportProtocol("default", layer=None, final=None),
    # The reference's final samples (run_steering, `steering.final`): 20 closed prompts × 5 samples × 512 tokens
    # at T = 1.1, steered and unsteered.
    "paper": ReportProtocol("paper", layer="middle",
                            final=SteeringSettings(prompts=list(reference_prompts().final), samples=5,
                                                   max_new_tokens=512, temperature=PAPER_SAMPLE_TEMPERATURE),
                            from_bos=True),
}
assert tuple(REPORT_PROTOCOLS) == PROTOCOLS


def report_protocol(name: str | None) -> ReportProtocol:
    """`default` (also for None) or `paper`; anything else is a `UserError` naming both."""
    found = REPORT_PROTOCOLS.get(name or "default")
    if found is None:
        raise UserError(f"unknown protocol {name!r}", f"pass --protocol {' or '.join(REPORT_PROTOCOLS)}")
    return found
