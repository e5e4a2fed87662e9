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
from engine.lenses.direction import (
    PATCH_DIRECTIONS,
    CausalProtocol,
    DirectionTest,
    causal_protocol,
    direction_effect,
    random_diffs,
    random_vectors,
    strongest_position,
)
from engine.lenses.kl import per_token_divergence
from engine.lenses.lens_cache import cached
from engine.lenses.mining import mine
from engine.lenses.pair_request import PairRequest, as_text, chat_messages, gather_examples, gather_texts
from engine.lenses.pca import KIND as PCA_KIND
from engine.lenses.pca import difference_pca
from engine.models.pair import ModelPair
from engine.ops import op
from engine.ops.adl_ops import run_of
from engine.protocol import methods
from engine.protocol.methods import LensKl, LensMine, PairParams
from engine.results.layer_choice import report_layer
from engine.steering.generate import SAMPLING_RULE
from engine.steering.steering_prompts import calibration_prompts
from store.hashing import json_sha256

DEFAULT_FACTORS = [-1.0, 0.5, 2.0, 3.0]
CAUSAL_K = 5  # positions patched when no run names its k


def pair_request(params: PairParams) -> PairRequest:
    """The pair named by `base`/`ft`[/`adapter`], or by the cached ADL `run` (the TUI sends only the run)."""
    if params.base is None and params.run is not None:
        return PairRequest.of_run(run_of(params.run, params.trust_remote_code).request)
    return PairRequest(base=_required(params.base, "base"), ft=_required(params.ft, "ft"), adapter=params.adapter,
                       device=params.device, dtype=params.dtype, trust_remote_code=params.trust_remote_code)


def _required(value: str | None, name: str) -> str:
    if value is None:
        raise UserError(f"missing parameter {name!r}", f"pass {name}")
    return value


def _texts(params: LensKl | LensMine, tokenizer: Any) -> list[str]:
    return gather_texts(params.texts, params.corpus, params.n, params.seed, tokenizer)


def _reply(payload: dict[str, Any], key: str, was_cached: bool) -> dict[str, Any]:
    return {"result": key, "cached": was_cached, **payload}


@op(methods.LENS_KL)
def kl(params: methods.LensKl, ctx: JobContext) -> dict[str, Any]:
    """Cached by the pair, the texts and the method's settings."""
    request = pair_request(params)
    pair = request.pair()
    texts = _texts(params, pair.tokenizer)
    method: dict[str, Any] = {"layer": params.layer, "top_n": params.top_n, "max_tokens": params.max_tokens,
              "window": params.window}
    inputs = {"pair": request.identity(), "texts": json_sha256(texts), **method}
    batch_size = params.batch_size
    return _reply(*cached(methods.LENS_KL.name, inputs,
                          lambda: per_token_divergence(pair, texts, batch_size=batch_size, ctx=ctx, **method)))


@op(methods.LENS_AMPLIFY)
def amplify_op(params: methods.LensAmplify, ctx: JobContext) -> dict[str, Any]:
    """The change is a LoRA adapter's delta or a full finetune's weight difference; `modules` (all | attention |
    mlp) and `layers` ([first, last]) limit the scaling to part of the model."""
    request = pair_request(params)
    pair = request.pair()
    layers = params.layers
    if layers is not None and len(layers) != 2:
        raise UserError(f"layers takes [first, last], got {layers}", "pass --layers FIRST-LAST, e.g. 0-8")
    scope = Scope(params.modules, (layers[0], layers[1]) if layers else None)
    method: dict[str, Any] = {"prompts": params.prompts or calibration_prompts(3),
              "factors": [float(f) for f in (params.factors or DEFAULT_FACTORS)],
              "max_new_tokens": params.max_new_tokens, "temperature": params.temperature, "seed": params.seed,
              "chat": params.chat}
    inputs = {"pair": request.identity(), **method} | ({"scope": scope.label()} if scope != EVERYTHING else {})
    inputs |= {"sampling": SAMPLING_RULE} if params.temperature > 0 else {}
    return _reply(*cached(methods.LENS_AMPLIFY.name, inputs, lambda: (amplify(pair, scope=scope, **method), {})))


@op(methods.LENS_MINE)
def mine_op(params: methods.LensMine, ctx: JobContext) -> dict[str, Any]:
    """With `topics`, the tokens are grouped into `n_topics` topics by a non-negative factorisation of the
    position × token matrix."""
    request = pair_request(params)
    pair = request.pair()
    texts = _texts(params, pair.tokenizer)
    method: dict[str, Any] = {"top_k": params.top_k, "n_tokens": params.n_tokens, "examples": params.examples,
              "max_tokens": params.max_tokens, "n_topics": params.n_topics if params.topics else 0}
    batch_size = params.batch_size
    inputs = {"pair": request.identity(), "texts": json_sha256(texts), **method}
    return _reply(*cached(methods.LENS_MINE.name, inputs,
                          lambda: mine(pair, texts, batch_size=batch_size, ctx=ctx, **method)))


@op(methods.LENS_CAUSAL)
def causal_op(params: methods.LensCausal, ctx: JobContext) -> dict[str, Any]:
    """`mode` patch (default): loss change when the finetuned model's first k positions get the base activations
    (`patch` base) or −mean diff (`patch` diff). `mode` direction: the paper's test, the finetune's component along
    a run's mean diff set to the base's (`ablate` base) or removed (`ablate` zero) at every token, against random
    controls. With a `run`, k defaults to the run's k and the layer to its report layer
    (engine/results/layer_choice.py)."""
    mode = params.mode
    run_id = params.run
    if run_id is None and (mode == "direction" or params.patch == "diff"):
        raise UserError(f"mode {mode} reads an ADL run's mean diff", "pass run=<ADL run id> (--run RUN)")
    if run_id is not None:
        run = run_of(run_id, params.trust_remote_code)
        pair, identity, adapter = run.pair(), {"run": run.run_id}, PairRequest.of_run(run.request).ft_spec.adapter
    else:
        run, request = None, pair_request(params)
        pair, identity, adapter = request.pair(), request.identity(), request.ft_spec.adapter
    protocol = causal_protocol(params.protocol)
    n, seed = params.n or protocol.n, params.seed
    ft_corpus = finetuning_corpus(params.recipe, params.ft_corpus, adapter)
    if mode == "direction":
        assert run is not None
        chat = gather_examples(params.chat, n, seed) if params.chat else chat_messages(n, seed, pair.tokenizer)
        sets = {"finetuning": gather_examples(ft_corpus, n, seed), "generic": gather_examples(params.generic, n, seed),
                "chat": chat}
        return _direction(params, protocol, run, pair, sets, identity, ctx)
    ft_texts = gather_texts(None, ft_corpus, n, seed, pair.tokenizer)
    generic = gather_texts(None, params.generic, n, seed, pair.tokenizer)
    inputs = {"pair": identity, "ft_texts": json_sha256(ft_texts), "generic": json_sha256(generic)}
    batch_size = params.batch_size
    patch = params.patch
    if patch not in ("base", "diff"):
        raise UserError(f"unknown patch {patch!r}", "pass patch base or diff")
    layer, k, diff = _int_layer(params.layer), CAUSAL_K, None
    if run is not None:
        layer = report_layer(run, params.layer)
        diff, k = torch.as_tensor(run.mean_diff[run.layer_index(layer)]), run.request.k
    method: dict[str, Any] = {"layer": layer, "k": params.k or k, "mode": patch,
                              "max_tokens": params.max_tokens or protocol.max_tokens}
    return _reply(*cached(methods.LENS_CAUSAL.name, inputs | method, lambda: (
        causal_check(pair, ft_texts, generic, diff=diff, batch_size=batch_size, ctx=ctx, **method), {})))


def _int_layer(layer: int | str | None) -> int | None:
    """A layer number: without a run there is no report layer or middle to name."""
    if layer is None or isinstance(layer, int):
        return layer
    raise UserError(f"parameter 'layer' must be int, got {type(layer).__name__}", "pass layer as a int")


def _patch_directions(value: str | None, protocol: CausalProtocol) -> tuple[str, ...]:
    """The patch directions asked for: one, `both`, or (None) the protocol's."""
    if value is None:
        return protocol.patch_directions
    if value == "both":
        return PATCH_DIRECTIONS
    if value not in PATCH_DIRECTIONS:
        raise UserError(f"unknown patch direction {value!r}",
                        f"pass --patch-direction {', '.join(PATCH_DIRECTIONS)} or both")
    return (value,)


def _direction(params: methods.LensCausal, protocol: CausalProtocol, run: AdlRun, pair: ModelPair,
               sets: dict[str, list[Any]], identity: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The direction test on the finetuning, generic and chat texts (`chat`: a corpus; default: neutral chats),
    at the run's report layer (`paper`: relative depth 0.5) and its strongest position (`paper`: every one)."""
    layer = report_layer(run, params.layer if params.layer is not None or protocol.name == "default" else "middle")
    row = run.mean_diff[run.layer_index(layer)]
    if params.pos is not None:
        positions = [run.check_position(params.pos)]
    else:
        positions = list(range(row.shape[0])) if protocol.all_positions else [strongest_position(row)]
    seed, batch_size = params.seed, params.batch_size
    count, max_tokens = params.n_controls or protocol.n_controls, params.max_tokens or protocol.max_tokens
    after_k = params.after_k if params.after_k is not None else protocol.after_k
    patches = _patch_directions(params.patch_direction, protocol)
    method: dict[str, Any] = {"mode": "direction", "layer": layer, "positions": positions, "ablation": params.ablate,
                              "n_controls": count, "max_tokens": max_tokens, "seed": seed, "after_k": after_k,
                              "patch_directions": list(patches), "protocol": protocol.name}
    chat = [as_text(e, pair.tokenizer) for e in sets["chat"]]

    def compute() -> tuple[dict[str, Any], dict[str, Any]]:
        with pair.use("base") as model:
            controls = {"random_vector": random_vectors(count, pair.d_model, seed),
                        "random_diff": random_diffs(model, chat, layer, count, seed, max_tokens, batch_size)}
        test = DirectionTest(layer, {p: row[p] for p in positions}, controls, params.ablate,  # type: ignore[arg-type]
                             patches, after_k, exclude_positions=True, seed=seed)
        out, sums = direction_effect(pair, sets, test, max_tokens, batch_size, ctx)
        return {"protocol": protocol.name, **out}, {name: v.numpy() for name, v in controls.items()} | sums

    inputs = {"pair": identity} | {name: json_sha256(examples) for name, examples in sets.items()} | method
    return _reply(*cached(methods.LENS_CAUSAL.name, inputs, compute))


@op(methods.LENS_PCA)
def pca_op(params: methods.LensPca, ctx: JobContext) -> dict[str, Any]:
    """Over `texts` or a `corpus` (default: the shipped generic text). With a `run`, the layer defaults to its
    report layer and the position to its longest mean diff after the first."""
    request = pair_request(params)
    run_id, pos = params.run, params.pos
    layer = _int_layer(params.layer) if run_id is None else None
    if run_id is not None:
        run = run_of(run_id, params.trust_remote_code)
        layer = report_layer(run, params.layer)
        pos = strongest_position(run.mean_diff[run.layer_index(layer)]) if pos is None else pos
    elif pos is None:
        raise UserError("name the position to read", "pass pos (--pos P), or a run whose strongest position is used")
    pair = request.pair()
    typed = params.texts
    corpus = params.corpus if params.corpus is not None or typed else "generic:"
    texts = gather_texts(typed, corpus, params.n, params.seed, pair.tokenizer)
    method: dict[str, Any] = {"layer": layer, "pos": pos, "n_components": params.n_components, "top_k": params.top_k}
    inputs = {"pair": request.identity(), "texts": json_sha256(texts), **method}
    batch_size = params.batch_size
    return _reply(*cached(PCA_KIND, inputs, lambda: difference_pca(pair, texts, batch_size=batch_size, ctx=ctx,
                                                                      **method)))


def finetuning_corpus(recipe: str | None, corpus: str | None, adapter: str | None) -> str:
    """The finetuning texts as a corpus source: `recipe`, `ft_corpus`, or the recipe the adapter was trained on."""
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
