"""Steered generation: `strength · vector` added to the residual after one decoder layer, every position.

One `generate` call carries prompts × strengths × samples rows; each row has its own strength (a
`[batch, 1, d_model]` addend), so strength 0 rows are the unsteered samples of the same batch. The
addend goes in through nnsight (`for step in tracer.all()`), which applies it to the prompt forward and
to every generated step. Prompts are left-padded; the chat template is applied when the tokenizer has one.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from engine import jobs
from engine.errors import UserError
from engine.models.loading import LoadedModel
from engine.ndif.limits import RequestLimits
from engine.steering.truncated_sampling import truncated_sampler

StepCallback = Callable[[int, list[str]], None]
"""Called after each decoding step with the step index and one new text piece per row ("" when done)."""

SAMPLING_RULE = "generation-config/top-k-draw"
"""Joins every cache key of sampled text: sampling passes only the temperature, as the reference does, so the
model's own generation config truncates the distribution (Gemma 3: top-k 64, top-p 0.95), else transformers'
default (top-k 50, top-p 1.0). Samples cached before this rule (the whole distribution) are not reused, nor those
drawn over the whole vocabulary before `TruncatedSampler` (the same distribution, another draw for a seed)."""


def sampling_kwargs(temperature: float) -> dict[str, object]:
    """`generate` arguments for `temperature` (0 = greedy): only the temperature is set when sampling, so
    top-k/top-p come from the model's generation config (the reference's behaviour, see `SAMPLING_RULE`)."""
    if temperature > 0:
        return dict(do_sample=True, temperature=temperature)
    return dict(do_sample=False, temperature=None, top_k=None, top_p=None)


def local_sampling_kwargs(model: LoadedModel, temperature: float) -> dict[str, object]:
    """`generate` arguments for a model run here: sampling at `temperature` draws among the top-k tokens
    (`TruncatedSampler`, the same distribution as `sampling_kwargs` without sorting or drawing over the whole
    vocabulary) wherever the model's config allows it; otherwise `sampling_kwargs`."""
    sampler = truncated_sampler(model.hf.generation_config, temperature, **sampling_of(model)) \
        if temperature > 0 else None
    if sampler is None:
        return sampling_kwargs(temperature)
    return sampling_kwargs(0.0) | {"logits_processor": [sampler]}


def sampling_of(model: LoadedModel) -> dict[str, Any]:
    """The top-k/top-p this model samples at (its generation config, else transformers' defaults)."""
    config = model.hf.generation_config
    defaults = config._get_default_generation_params()
    return {"top_k": config.top_k if config.top_k is not None else defaults["top_k"],
            "top_p": config.top_p if config.top_p is not None else defaults["top_p"]}


@dataclass
class SteeredSample:
    """One generated continuation; `completion_ids` exclude padding and the end-of-sequence token."""

    prompt: str
    strength: float
    sample: int
    text: str
    prompt_ids: list[int]
    completion_ids: list[int]


def format_prompt(model: LoadedModel, prompt: str, chat: bool = True) -> list[int]:
    """Token ids of a user turn (chat template + generation prompt when there is one, else raw with BOS)."""
    tok = model.tokenizer
    if chat and tok.chat_template:
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                       add_generation_prompt=True)
        return tok(text, add_special_tokens=False)["input_ids"]
    return tok(prompt)["input_ids"]


def generate_steered(model: LoadedModel, vector: Float[Tensor, " d_model"], layer: int, prompts: Sequence[str],
                     strengths: Sequence[float], samples: int = 1, max_new_tokens: int = 64,
                     temperature: float = 0.0, seed: int = 0, chat: bool = True,
                     on_step: StepCallback | None = None) -> list[SteeredSample]:
    """Generate for every (prompt, strength, sample) in one batched call; rows in that nesting order.

    `temperature` 0 is greedy (identical samples); otherwise sampling with the model's own top-k/top-p
    (`sampling_kwargs`), seeded by `seed` (the RNG is forked, so the global state is untouched). With sampling
    a row's text depends on the whole batch (shared RNG stream); greedy rows do not.
    """
    rows = [(p, s, n) for p in prompts for s in strengths for n in range(samples)]
    if not rows:
        return []
    addends = torch.tensor([s for _, s, _ in rows], dtype=torch.float32)[:, None] * vector.float()[None]
    texts, row_ids, completions = generate_rows(model, layer, [p for p, _, _ in rows], addends, max_new_tokens,
                                                temperature, seed, chat, on_step)
    return [SteeredSample(prompt=p, strength=float(s), sample=n, text=t, prompt_ids=ids, completion_ids=c)
            for (p, s, n), t, ids, c in zip(rows, texts, row_ids, completions, strict=True)]


def generate_rows(model: LoadedModel, layer: int, prompts: Sequence[str], addends: Float[Tensor, "row d_model"],
                  max_new_tokens: int = 64, temperature: float = 0.0, seed: int = 0, chat: bool = True,
                  on_step: StepCallback | None = None) -> tuple[list[str], list[list[int]], list[list[int]]]:
    """One generate call where row i adds `addends[i]` at `layer` (any mix of vectors and strengths).

    Returns (texts, prompt ids, completion ids) per row. `generate_steered` and batched calibration of
    several positions at once are both this call.
    """
    if not 0 <= layer < model.n_layers:
        raise ValueError(f"layer {layer} is outside [0, {model.n_layers})")
    encoded = {p: format_prompt(model, p, chat) for p in dict.fromkeys(prompts)}
    row_ids = [encoded[p] for p in prompts]
    check_context(model, max(map(len, row_ids), default=0), max_new_tokens)
    step = len(row_ids)
    if model.remote:  # NDIF: requests of bounded rows (each brings back prompt + completion ids)
        step = RequestLimits.current().rows_per_request(8 * (max(map(len, row_ids)) + max_new_tokens), step)
    completions: list[list[int]] = []
    ctx, total = jobs.current(), len(row_ids) * max_new_tokens
    ctx.progress(0, total, "tokens")
    for start in range(0, len(row_ids), step):
        chunk = row_ids[start:start + step]
        batch = model.tokenizer.pad({"input_ids": chunk}, padding=True, padding_side="left", return_tensors="pt")

        def on_count(steps: int, start: int = start, rows: int = len(chunk)) -> None:
            ctx.progress(start * max_new_tokens + steps * rows, total, "tokens")

        generated = _generate(model, batch["input_ids"], batch["attention_mask"], layer,
                              addends[start:start + step, None, :], max_new_tokens, temperature, seed,
                              None if model.remote else on_step, None if model.remote else on_count)
        completions += _strip(model, generated[:, batch["input_ids"].shape[1]:])
        ctx.progress((start + len(chunk)) * max_new_tokens, total, "tokens")
    texts = model.tokenizer.batch_decode(completions, skip_special_tokens=True)
    if model.remote and on_step is not None:  # nothing streams back from NDIF: the whole text at once
        on_step(0, texts)
    return texts, row_ids, completions


def check_context(model: LoadedModel, prompt_tokens: int, max_new_tokens: int) -> None:
    """Refuse a prompt that cannot fit: past the model's positions generation fails deep inside it (an
    index error) or, with rotary positions, silently writes nonsense."""
    limit = getattr(model.hf.config.get_text_config(), "max_position_embeddings", None)
    if isinstance(limit, int) and prompt_tokens + max_new_tokens > limit:
        raise UserError(f"prompt of {prompt_tokens} tokens + {max_new_tokens} new tokens exceeds the model's "
                        f"context of {limit} positions",
                        f"shorten the prompt or lower --max-new-tokens (prompt + new tokens ≤ {limit})")


def _generate(model: LoadedModel, input_ids: Int[Tensor, "batch seq"], attention_mask: Int[Tensor, "batch seq"],
              layer: int, addend: Float[Tensor, "batch 1 d_model"], max_new_tokens: int, temperature: float,
              seed: int, on_step: StepCallback | None,
              on_count: Callable[[int], None] | None = None) -> Int[Tensor, "batch total"]:
    device = model.input_device
    kwargs: dict[str, object] = dict(max_new_tokens=max_new_tokens, pad_token_id=model.tokenizer.pad_token_id)
    kwargs |= sampling_kwargs(temperature) if model.remote else local_sampling_kwargs(model, temperature)
    if on_step is not None or on_count is not None:
        kwargs["streamer"] = _RowStreamer(model, on_step, on_count)
    envoy = model.nn_layer(layer)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode(), warnings.catch_warnings():
        # nnsight warns that the open `tracer.all()` loop ends when generation stops: that is by design here.
        warnings.filterwarnings("ignore", message=".*was never reached.*")
        # The same block runs here or on NDIF (`remote=model.remote`): envoys and tensors only, and the
        # seed is set inside it so that it seeds the machine that samples.
        with model.nn.generate(remote=model.remote, **kwargs) as tracer:
            with tracer.invoke(input_ids.to(device), attention_mask=attention_mask.to(device)):
                torch.manual_seed(seed)
                for _ in tracer.all():
                    out = envoy.output
                    out[:] += addend.to(out.device, out.dtype)
            with tracer.invoke():
                result = tracer.result.save()
    return result.cpu()


def _strip(model: LoadedModel, completion: Int[Tensor, "batch new"]) -> list[list[int]]:
    """Completion ids up to (not including) the first end-of-sequence token of each row."""
    eos = model.hf.generation_config.eos_token_id
    eos_ids = torch.tensor(eos if isinstance(eos, list) else [eos if eos is not None else -1])
    is_end = torch.isin(completion, eos_ids)
    lengths = torch.where(is_end.any(dim=1), is_end.int().argmax(dim=1), completion.shape[1])
    return [row[:n].tolist() for row, n in zip(completion, lengths.tolist(), strict=True)]


class _RowStreamer:
    """A transformers streamer (`put`/`end`, duck-typed so that transformers is not imported with this
    module): hands each decoding step's new text (one piece per row) to `on_step` and the number of steps so far
    to `on_count` (a counter only: no decoding); the first `put` is the prompt.

    Each row's completion is re-decoded as a whole and the new suffix sent, so word spacing and multi-byte
    characters come out right whatever the tokenizer (a piece ending in a partial character waits).
    """

    def __init__(self, model: LoadedModel, on_step: StepCallback | None,
                 on_count: Callable[[int], None] | None = None) -> None:
        self.tokenizer = model.tokenizer
        eos = model.hf.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos])
        self.on_step, self.on_count = on_step, on_count
        self.step = -1
        self.ids: list[list[int]] = []
        self.sent: list[int] = []
        self.done: list[bool] = []

    def put(self, value: Tensor) -> None:
        if self.step < 0:
            rows = value.shape[0]
            self.ids, self.sent, self.done = [[] for _ in range(rows)], [0] * rows, [False] * rows
            self.step = 0
            return
        self.step += 1
        if self.on_count is not None:
            self.on_count(self.step)
        if self.on_step is not None:
            self._send(value, self.on_step)

    def _send(self, value: Tensor, on_step: StepCallback) -> None:
        """The new text piece of every row since the last step, to `on_step`."""
        for row, token in enumerate(value.reshape(-1).tolist()):
            if not self.done[row]:
                self.done[row] = token in self.eos
                self.ids[row].append(token)
        texts = self.tokenizer.batch_decode(self.ids, skip_special_tokens=True)
        pieces = []
        for row, text in enumerate(texts):
            ready = text if not text.endswith("\ufffd") else text[: self.sent[row]]
            pieces.append(ready[self.sent[row]:])
            self.sent[row] = max(self.sent[row], len(ready))
        on_step(self.step - 1, pieces)

    def end(self) -> None:
        """Nothing is held back past the last step except a never-completed character."""


def generate_unsteered(model: LoadedModel, prompts: Sequence[str], max_new_tokens: int = 64,
                       temperature: float = 0.0, seed: int = 0) -> list[str]:
    """Plain answers, through the same batching and prompt formatting as the steered rows (a zero addend)."""
    texts, _, _ = generate_rows(model, 0, prompts, torch.zeros(len(prompts), model.d_model), max_new_tokens,
                                temperature, seed)
    return texts
