"""Ops for the lenses beside ADL: `lens.kl`, `lens.amplify`, `lens.mine`, `lens.causal`, `lens.pca`. Each result is
cached in the store under a content key of the pair's weights, the exact texts and the method parameters.

Common params: base, ft, adapter, device, dtype, trust_remote_code (causal may name an ADL `run` instead).
Texts: `texts` (list of strings) or `corpus` (+ `n`, `seed`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from engine.adl.runs import AdlRun
from engine.errors import UserError
from engine.jobs import JobContext
from engine.lenses.amplify import EVERYTHING, Scope, amplify
from engine.lenses.causal import causal_check
from engine.lenses.direction import DEFAULT_CONTROLS, direction_effect, random_diffs, random_vectors, strongest_position
from engine.lenses.kl import per_token_divergence
from engine.lenses.lens_cache import cached
from engine.lenses.mining import mine
from engine.lenses.pair_request import PairRequest, chat_texts, gather_texts
from engine.lenses.pca import DEFAULT_COMPONENTS, DEFAULT_TOP, difference_pca
from engine.lenses.pca import KIND as PCA_KIND
from engine.lenses.topics import DEFAULT_TOPICS
from engine.models.pair import ModelPair
from engine.ops import op
from engine.ops.adl_ops import run_param
from engine.params import get, get_count, get_list
from engine.results.layer_choice import report_layer
from engine.steering.steering_prompts import calibration_prompts
from store.hashing import json_sha256

DEFAULT_FACTORS = [-1.0, 0.5, 2.0, 3.0]
CAUSAL_MODES = ("patch", "direction")
PCA_TEXTS = 256  # texts of the corpus whose differences the PCA reads (the demo runs' n)


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
    """Generate with the finetune's change (a LoRA adapter's delta, or a full finetune's weight difference)
    scaled by each factor, beside base and plain finetune; `modules` (all | attention | mlp) and `layers`
    ([first, last]) limit the scaling to part of the model."""
    request = pair_request(params)
    pair = request.pair()
    layers = get_list(params, "layers", int)
    if layers is not None and len(layers) != 2:
        raise UserError(f"layers takes [first, last], got {layers}", "pass --layers FIRST-LAST, e.g. 0-8")
    scope = Scope(get(params, "modules", str, "all"), (layers[0], layers[1]) if layers else None)
    method = {"prompts": get_list(params, "prompts", str) or calibration_prompts(3),
              "factors": [float(f) for f in (get_list(params, "factors", float) or DEFAULT_FACTORS)],
              "max_new_tokens": get_count(params, "max_new_tokens", 48),
              "temperature": get(params, "temperature", float, 0.0), "seed": get(params, "seed", int, 0),
              "chat": get(params, "chat", bool, True)}
    inputs = {"pair": request.identity(), **method} | ({"scope": scope.label()} if scope != EVERYTHING else {})
    return _reply(*cached("lens.amplify", inputs, lambda: (amplify(pair, scope=scope, **method), {})))


@op("lens.mine", long=True)
def mine_op(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Tokens most often in the top-K of (ft − base) log-probs over a corpus, with contexts; with `topics`, grouped
    into `n_topics` topics by a non-negative factorisation of the position × token matrix."""
    request = pair_request(params)
    pair = request.pair()
    texts = _texts(params, pair.tokenizer, 50)
    method = {"top_k": get_count(params, "top_k", 20), "n_tokens": get_count(params, "n_tokens", 30),
              "examples": get_count(params, "examples", 3), "max_tokens": get_count(params, "max_tokens", 128),
              "n_topics": get_count(params, "n_topics", DEFAULT_TOPICS) if get(params, "topics", bool, False) else 0}
    batch_size = get_count(params, "batch_size", 4)
    inputs = {"pair": request.identity(), "texts": json_sha256(texts), **method}
    return _reply(*cached("lens.mine", inputs, lambda: mine(pair, texts, batch_size=batch_size, ctx=ctx, **method)))


@op("lens.causal", long=True)
def causal_op(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """`mode` patch (default): loss change when the finetuned model's first k positions get the base activations
    (`patch` base) or −mean diff (`patch` diff). `mode` direction: the paper's test, the finetune's component along
    a run's mean diff set to the base's (`ablate` base) or removed (`ablate` zero) at every token, against random
    controls. With a `run`, k defaults to the run's k and the layer to its report layer
    (engine/results/layer_choice.py)."""
    mode = get(params, "mode", str, "patch")
    if mode not in CAUSAL_MODES:
        raise UserError(f"unknown mode {mode!r}", f"pass mode {' or '.join(CAUSAL_MODES)}")
    run_id = get(params, "run", str)
    if run_id is None and (mode == "direction" or get(params, "patch", str) == "diff"):
        raise UserError(f"mode {mode} reads an ADL run's mean diff", "pass run=<ADL run id> (--run RUN)")
    if run_id is not None:
        run = run_param(params)
        pair, identity, adapter = run.pair(), {"run": run.run_id}, PairRequest.of_run(run.request).ft_spec.adapter
    else:
        run, request = None, pair_request(params)
        pair, identity, adapter = request.pair(), request.identity(), request.ft_spec.adapter
        layer = get(params, "layer", int)
    n, seed = get(params, "n", int, 20), get(params, "seed", int, 0)
    ft_texts = gather_texts(None, finetuning_corpus(params, adapter), n, seed, pair.tokenizer)
    generic = gather_texts(None, get(params, "generic", str, "generic:"), n, seed, pair.tokenizer)
    inputs = {"pair": identity, "ft_texts": json_sha256(ft_texts), "generic": json_sha256(generic)}
    batch_size = get_count(params, "batch_size", 4)
    if mode == "direction":
        assert run is not None
        return _direction(params, run, pair, {"finetuning": ft_texts, "generic": generic}, inputs, batch_size, ctx)
    patch = get(params, "patch", str, "base")
    if patch not in ("base", "diff"):
        raise UserError(f"unknown patch {patch!r}", "pass patch base or diff")
    layer, k, diff = get(params, "layer", int), 5, None
    if run is not None:
        layer = report_layer(run, params.get("layer"))
        diff, k = torch.as_tensor(run.mean_diff[run.layer_index(layer)]), run.request.k
    method = {"layer": layer, "k": get_count(params, "k", k), "mode": patch,
              "max_tokens": get_count(params, "max_tokens", 64)}
    return _reply(*cached("lens.causal", inputs | method, lambda: (
        causal_check(pair, ft_texts, generic, diff=diff, batch_size=batch_size, ctx=ctx, **method), {})))


def _direction(params: dict[str, Any], run: AdlRun, pair: ModelPair, sets: dict[str, list[str]], inputs: dict[str, Any],
               batch_size: int, ctx: JobContext) -> dict[str, Any]:
    """The direction test on the finetuning, generic and chat texts (`chat`: a corpus; default: neutral chats)."""
    n, seed = get(params, "n", int, 20), get(params, "seed", int, 0)
    chat_source = get(params, "chat", str)
    sets["chat"] = (gather_texts(None, chat_source, n, seed, pair.tokenizer) if chat_source
                    else chat_texts(n, seed, pair.tokenizer))
    layer = report_layer(run, params.get("layer"))
    row = run.mean_diff[run.layer_index(layer)]
    pos = get(params, "pos", int)
    pos = strongest_position(row) if pos is None else run.check_position(pos)
    method = {"mode": "direction", "layer": layer, "pos": pos, "ablation": get(params, "ablate", str, "base"),
              "n_controls": get_count(params, "n_controls", DEFAULT_CONTROLS),
              "max_tokens": get_count(params, "max_tokens", 64), "seed": seed}

    def compute() -> tuple[dict[str, Any], dict[str, Any]]:
        count, max_tokens = method["n_controls"], method["max_tokens"]
        with pair.use("base") as model:
            controls = {"random_vector": random_vectors(count, pair.d_model, seed),
                        "random_diff": random_diffs(model, sets["chat"], layer, count, seed, max_tokens, batch_size)}
        out = direction_effect(pair, sets, row[pos], layer, controls, method["ablation"], max_tokens, batch_size, ctx)
        return {"pos": pos, "n_controls": count, **out}, {name: v.numpy() for name, v in controls.items()}

    inputs = inputs | {"chat": json_sha256(sets["chat"])} | method
    return _reply(*cached("lens.causal", inputs, compute))


@op(PCA_KIND, long=True)
def pca_op(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Principal components of the per-text (ft − base) differences at (`layer`, `pos`) over `texts` or a
    `corpus` (default: the shipped generic text), each read through the logit lens. With a `run`, the layer
    defaults to its report layer and the position to its longest mean diff after the first."""
    request = pair_request(params)
    run_id, layer, pos = get(params, "run", str), get(params, "layer", int), get(params, "pos", int)
    if run_id is not None:
        run = run_param(params)
        layer = report_layer(run, params.get("layer"))
        pos = strongest_position(run.mean_diff[run.layer_index(layer)]) if pos is None else pos
    elif pos is None:
        raise UserError("name the position to read", "pass pos (--pos P), or a run whose strongest position is used")
    pair = request.pair()
    typed = get_list(params, "texts", str)
    texts = gather_texts(typed, get(params, "corpus", str, None if typed else "generic:"),
                         get(params, "n", int, PCA_TEXTS), get(params, "seed", int, 0), pair.tokenizer)
    method = {"layer": layer, "pos": pos, "n_components": get_count(params, "n_components", DEFAULT_COMPONENTS),
              "top_k": get_count(params, "top_k", DEFAULT_TOP)}
    inputs = {"pair": request.identity(), "texts": json_sha256(texts), **method}
    batch_size = get_count(params, "batch_size", 8)
    return _reply(*cached(PCA_KIND, inputs, lambda: difference_pca(pair, texts, batch_size=batch_size, ctx=ctx,
                                                                      **method)))


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
