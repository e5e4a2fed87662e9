"""Ops for the lenses beside ADL: `lens.kl`, `lens.amplify`, `lens.mine`, `lens.causal`. Each result is
cached in the store under a content key of the pair's weights, the exact texts and the method parameters.

Common params: base, ft, adapter, device, dtype, trust_remote_code (causal may name an ADL `run` instead).
Texts: `texts` (list of strings) or `corpus` (+ `n`, `seed`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from engine.errors import UserError
from engine.jobs import JobContext
from engine.lenses.amplify import amplify
from engine.lenses.cache import cached
from engine.lenses.causal import causal_check
from engine.lenses.kl import per_token_divergence
from engine.lenses.mining import mine
from engine.lenses.request import PairRequest, gather_texts
from engine.lenses.topics import group_topics
from engine.ops import op
from engine.ops.adl import run_param
from engine.ops.params import get, get_count, get_list
from engine.steering.prompts import calibration_prompts
from store.hashing import json_sha256

DEFAULT_FACTORS = [-1.0, 0.5, 2.0, 3.0]


def pair_request(params: dict[str, Any]) -> PairRequest:
    """The pair named by `base`/`ft`[/`adapter`], or by the cached ADL `run` (the TUI sends only the run)."""
    if "base" not in params and get(params, "run", str) is not None:
        return PairRequest.of_run(run_param(params).request)
    return PairRequest(base=get(params, "base", str, required=True), ft=get(params, "ft", str, required=True),
                       adapter=get(params, "adapter", str), device=get(params, "device", str, "auto"),
                       dtype=get(params, "dtype", str, "auto"),
                       trust_remote_code=get(params, "trust_remote_code", bool, False))


def _texts(params: dict[str, Any], tokenizer: Any, n_default: int) -> list[str]:
    return gather_texts(get_list(params, "texts", str), get(params, "corpus", str), get(params, "n", int, n_default),
                        get(params, "seed", int, 0), tokenizer)


def _reply(payload: dict[str, Any], key: str, was_cached: bool) -> dict[str, Any]:
    return {"result": key, "cached": was_cached, **payload}


@op("lens.kl", long=True)
def kl(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Per-token KL(ft‖base) and activation-difference norm on texts; the top max-divergence snippets."""
    request = pair_request(params)
    pair = request.pair()
    texts = _texts(params, pair.tokenizer, 20)
    method = {"layer": get(params, "layer", int), "top_n": get_count(params, "top_n", 10),
              "max_tokens": get_count(params, "max_tokens", 128), "window": get_count(params, "window", 12)}
    inputs = {"pair": request.identity(), "texts": json_sha256(texts), **method}
    batch_size = get_count(params, "batch_size", 4)
    return _reply(*cached("lens.kl", inputs, lambda: per_token_divergence(pair, texts, batch_size=batch_size,
                                                                           ctx=ctx, **method)))


@op("lens.amplify", long=True)
def amplify_op(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Generate with a LoRA adapter's delta scaled by each factor, beside base and plain finetune."""
    request = pair_request(params)
    pair = request.pair()
    method = {"prompts": get_list(params, "prompts", str) or calibration_prompts(3),
              "factors": [float(f) for f in (get_list(params, "factors", float) or DEFAULT_FACTORS)],
              "max_new_tokens": get_count(params, "max_new_tokens", 48),
              "temperature": get(params, "temperature", float, 0.0), "seed": get(params, "seed", int, 0),
              "chat": get(params, "chat", bool, True)}
    ctx.progress(0, None, "generating")
    return _reply(*cached("lens.amplify", {"pair": request.identity(), **method},
                          lambda: (amplify(pair, **method), {})))


@op("lens.mine", long=True)
def mine_op(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Tokens most often in the top-K of (ft − base) log-probs over a corpus, with contexts and topics."""
    request = pair_request(params)
    pair = request.pair()
    texts = _texts(params, pair.tokenizer, 50)
    method = {"top_k": get_count(params, "top_k", 20), "n_tokens": get_count(params, "n_tokens", 30),
              "examples": get_count(params, "examples", 3), "max_tokens": get_count(params, "max_tokens", 128)}
    topics = get(params, "topics", bool, False)
    batch_size = get_count(params, "batch_size", 4)

    def compute() -> tuple[dict[str, Any], dict[str, Any]]:
        payload, tensors = mine(pair, texts, batch_size=batch_size, ctx=ctx, **method)
        if topics:
            kept = [t for t in payload["tokens"] if not t["trivial"]]
            payload["topics"] = group_topics([t["token"] for t in kept], [t["count"] for t in kept])
        return payload, tensors

    inputs = {"pair": request.identity(), "texts": json_sha256(texts), "topics": topics, **method}
    return _reply(*cached("lens.mine", inputs, compute))


@op("lens.causal", long=True)
def causal_op(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Loss change when the finetuned model's first k positions get the base activations (or −diff).

    With a `run`, k defaults to the run's k and the layer to its middle layer."""
    mode = get(params, "mode", str, "base")
    if mode not in ("base", "diff"):
        raise UserError(f"unknown mode {mode!r}", "pass mode base or diff")
    run_id = get(params, "run", str)
    diff, layer, k = None, get(params, "layer", int), 5
    if run_id is not None:
        run = run_param(params)
        pair, identity, adapter = run.pair(), {"run": run_id}, PairRequest.of_run(run.request).ft_spec.adapter
        layer = run.middle_layer if layer is None else layer
        diff, k = run.mean_diff[run.layer_index(layer)], run.request.k
    elif mode == "diff":
        raise UserError("mode diff subtracts an ADL run's mean diff", "pass run=<ADL run id>")
    else:
        request = pair_request(params)
        pair, identity, adapter = request.pair(), request.identity(), request.ft_spec.adapter
    n, seed = get(params, "n", int, 20), get(params, "seed", int, 0)
    ft_texts = gather_texts(None, finetuning_corpus(params, adapter), n, seed, pair.tokenizer)
    generic = gather_texts(None, get(params, "generic", str, "generic:"), n, seed, pair.tokenizer)
    method = {"layer": layer, "k": get_count(params, "k", k), "mode": mode,
              "max_tokens": get_count(params, "max_tokens", 64)}
    inputs = {"pair": identity, "ft_texts": json_sha256(ft_texts), "generic": json_sha256(generic), **method}
    batch_size = get_count(params, "batch_size", 4)
    diff_t = torch.as_tensor(diff) if diff is not None else None
    return _reply(*cached("lens.causal", inputs, lambda: (
        causal_check(pair, ft_texts, generic, diff=diff_t, batch_size=batch_size, ctx=ctx, **method), {})))


def finetuning_corpus(params: dict[str, Any], adapter: str | None) -> str:
    """The finetuning texts as a corpus source: `recipe`, `ft_corpus`, or the recipe the adapter was trained on."""
    recipe, corpus = get(params, "recipe", str), get(params, "ft_corpus", str)
    if recipe and corpus:
        raise UserError("name the finetuning texts once", "pass either --recipe NAME or --ft-corpus SRC")
    if recipe or corpus:
        return f"recipe:{recipe}" if recipe else str(corpus)
    trained_on = organism_recipe(adapter)
    if trained_on is None:
        raise UserError("name the finetuning texts", "pass --ft-corpus SRC (a file, hf:NAME or recipe:NAME)")
    return f"recipe:{trained_on}"


def organism_recipe(adapter: str | None) -> str | None:
    """The recipe an organism adapter was trained on, from its organism.json (None for other finetunes)."""
    meta = Path(adapter) / "organism.json" if adapter else None
    if meta is None or not meta.is_file():
        return None
    try:
        recipe = json.loads(meta.read_text()).get("recipe")
    except (OSError, ValueError):
        return None
    return recipe if isinstance(recipe, str) and recipe else None
