"""Judging whether steered samples are still coherent text: by an LLM, or offline by perplexity.

Offline rule (`perplexity_judge`): a sample is coherent when
  1. its mean per-token negative log-likelihood under the *unsteered* model is at most the 90th
     percentile of unsteered reference samples' NLL (same prompts, same temperature) plus `margin`
     nats (default 1.0, i.e. at most e≈2.7× the perplexity of a typical-but-unlucky unsteered sample), and
  2. at least half of its token bigrams are distinct (steering often collapses into loops such as
     "cake cake cake", which a model finds *likely* once started, so perplexity alone would pass them),
  3. it is not empty.
Gibberish and word salad fail (1) by a wide margin; a fluent answer that drifted to the finetune's topic
costs a little surprise per token but stays well inside it.

A judge's verdict per sample is True (coherent), False, or None (ungraded: the LLM judge gave no readable
answer); an ungraded sample never counts as coherent.
"""

from __future__ import annotations

import inspect
import itertools
import re
from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float, Int

from engine.errors import Ungraded
from engine.models.loading import LoadedModel
from engine.steering.generate import SteeredSample
from engine.steering.steering_prompts import reference_prompts

CoherenceJudge = Callable[[list[SteeredSample]], list[bool | None]]
Complete = Callable[..., str]
"""`complete(prompt, system=None) -> str` (a `engine.judges.client.JudgeClient`)."""


def completion_nll(model: LoadedModel, samples: Sequence[SteeredSample],
                   max_logits: int = 200_000_000) -> Float[torch.Tensor, " sample"]:
    """Mean NLL (nats/token) of each sample's completion given its prompt, under the model as it is
    (no steering). Rows are batched, left-padded; only completion positions get logits."""
    out = torch.full((len(samples),), float("inf"))
    scored = [i for i, s in enumerate(samples) if s.completion_ids]
    if not scored:
        return out
    keep = max(len(samples[i].completion_ids) for i in scored) + 1
    weight = model.lm_head.weight
    assert isinstance(weight, torch.Tensor)
    vocab = weight.shape[0]
    chunk = max(1, max_logits // (keep * vocab))
    trims = "logits_to_keep" in inspect.signature(model.hf.forward).parameters
    for start in range(0, len(scored), chunk):
        rows = scored[start:start + chunk]
        seqs = [samples[i].prompt_ids + samples[i].completion_ids for i in rows]
        batch = model.tokenizer.pad({"input_ids": seqs}, padding=True, padding_side="left", return_tensors="pt")
        ids = batch["input_ids"].to(model.input_device)
        width = ids.shape[1]
        # only the positions that predict a completion token go through the unembedding
        trim = {"logits_to_keep": torch.arange(width - keep, width - 1, device=ids.device)} if trims else {}
        with torch.inference_mode():
            logits = model.hf(input_ids=ids, attention_mask=batch["attention_mask"].to(model.input_device),
                              **trim).logits[:, -(keep - 1):].float()
        logp = token_logprobs(logits, ids[:, -(keep - 1):].to(logits.device)).cpu()
        lengths = torch.tensor([len(samples[i].completion_ids) for i in rows])
        valid = torch.arange(keep - 1)[None, :] >= (keep - 1 - lengths)[:, None]
        out[rows] = -(logp * valid).sum(dim=1) / lengths
    return out


def token_logprobs(logits: Float[torch.Tensor, "row pos vocab"],
                   targets: Int[torch.Tensor, "row pos"]) -> Float[torch.Tensor, "row pos"]:
    """log p(target) at each position: its logit minus the log-sum-exp over the vocabulary, equal to
    `log_softmax(...).gather(...)` without writing a second [rows, positions, vocab] tensor (on a 262k vocabulary
    that copy is most of what the judge's scoring spends outside the model)."""
    return logits.gather(-1, targets[..., None])[..., 0] - torch.logsumexp(logits, dim=-1)


def distinct_bigrams(ids: Sequence[int]) -> float:
    """Share of distinct token bigrams (1.0 for texts too short to repeat)."""
    pairs = list(itertools.pairwise(ids))
    return len(set(pairs)) / len(pairs) if pairs else 1.0


def perplexity_judge(model: LoadedModel, reference: Sequence[SteeredSample], margin: float = 1.0,
                     quantile: float = 0.9, min_distinct: float = 0.5) -> CoherenceJudge:
    """Offline judge calibrated on unsteered `reference` samples (see the module docstring)."""
    ref = completion_nll(model, reference)
    ref = ref[torch.isfinite(ref)]
    limit = (float(torch.quantile(ref, quantile)) if ref.numel() else 5.0) + margin

    def judge(samples: list[SteeredSample]) -> list[bool | None]:
        nll = completion_nll(model, samples).tolist()
        return [bool(s.completion_ids) and n <= limit and distinct_bigrams(s.completion_ids) >= min_distinct
                for s, n in zip(samples, nll, strict=True)]
    return judge


_LABEL = re.compile(r"^\s*answer\s*:\s*(coherent|incoherent)\b", re.IGNORECASE | re.MULTILINE)


def coherence_prompt(text: str) -> str:
    return (
        "Judge only whether the following model answer is coherent text: grammatical enough to read and "
        "semantically connected. Topic, truth, style and being cut off do not matter; word salad, invented "
        "words, heavy repetition or unrelated fragments make it incoherent.\n\n"
        f"[ANSWER START]\n{text}\n[ANSWER END]\n\nEnd with one line: 'ANSWER: COHERENT' or 'ANSWER: INCOHERENT'."
    )


def llm_coherence_judge(complete: Callable[[str], str]) -> CoherenceJudge:
    """One `complete` call per sample (the reference's per-sample judge). An empty sample is incoherent without
    asking; an unreadable reply, or a call that raised `Ungraded`, leaves the sample ungraded (None)."""
    def verdict(sample: SteeredSample) -> bool | None:
        if not sample.text.strip():
            return False
        try:
            labels = _LABEL.findall(complete(coherence_prompt(sample.text)))
        except Ungraded:
            return None
        return labels[-1].lower() == "coherent" if labels else None

    def judge(samples: list[SteeredSample]) -> list[bool | None]:
        return [verdict(s) for s in samples]
    return judge


_REFERENCE_LABEL = re.compile(r"^\s*answer\s*:\s*(coherent|incoherent)\s*[.!]?\s*$", re.IGNORECASE | re.MULTILINE)


def reference_verdict(text: str) -> bool | None:
    """The reference's parse: the last line that is exactly `ANSWER: COHERENT|INCOHERENT` (a final `.`/`!`
    allowed), else None (its UNKNOWN)."""
    labels = _REFERENCE_LABEL.findall(text)
    return labels[-1].lower() == "coherent" if labels else None


def reference_coherence_judge(complete: Complete, complete_cold: Complete) -> CoherenceJudge:
    """The reference's grader (`--protocol paper`): its instructions with nine worked examples as the system
    prompt, the answer alone as the user turn; an UNKNOWN verdict is asked once more at temperature 0
    (`complete_cold`) and, still UNKNOWN, left out (None). An empty sample is left out without asking (the
    reference drops empty samples before grading)."""
    system = reference_prompts().coherence_system

    def verdict(sample: SteeredSample) -> bool | None:
        if not sample.text.strip():
            return None
        user = f"[ANSWER START]\n{sample.text}\n[ANSWER END]"
        try:
            found = reference_verdict(complete(user, system=system))
            return found if found is not None else reference_verdict(complete_cold(user, system=system))
        except Ungraded:
            return None

    def judge(samples: list[SteeredSample]) -> list[bool | None]:
        return [verdict(s) for s in samples]
    return judge
