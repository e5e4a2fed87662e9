"""`difflens kl | amplify | mine | causal | pca`: the lenses beside ADL, each one engine op (`lens.*`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from engine.protocol import methods
from engine.protocol.methods import LensAmplify, LensCausal, LensKl, LensMine
from engine.protocol.params import ParamsError
from engine.protocol.ranges import span
from tui.cli.engine_call import call_engine, target_from
from tui.cli.options import Adapter, Base, Device, Dtype, Engine, Ft, Json, Remote, Seed
from tui.cli.output import emit_json, fail, out
from tui.render.lens_views import (
    amplify_table,
    causal_view,
    divergence_view,
    mining_table,
    pca_view,
    topics_view,
)

TextOpt = Annotated[list[str] | None, typer.Option("--text", help="A text to read (repeatable).")]
CorpusOpt = Annotated[str | None, typer.Option("--corpus", help="generic:, a .txt/.jsonl/.parquet file or hf:NAME.")]
LayerOpt = Annotated[int | None, typer.Option("--layer", help="Decoder layer (default: the run's report layer "
                                                              "with --run, else the middle one).")]
NOpt = Annotated[int, typer.Option("-n", help="Texts drawn from the corpus.")]
MaxTokens = Annotated[int, typer.Option("--max-tokens", help="Tokens read per text.")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size")]
TopSnippets = Annotated[int, typer.Option("-n", help="Top snippets to show (corpus: also texts read).")]
TopK = Annotated[int, typer.Option("-k", help="Top-K of the log-prob difference per position.")]
OptBase = Annotated[str | None, typer.Option("--base", help="Base model (or give --run).")]
OptFt = Annotated[str | None, typer.Option("--ft", help="Finetuned model (or give --run).")]
Run = Annotated[str | None, typer.Option("--run", help="ADL run: its pair, and its mean diff for --mode diff.")]
Recipe = Annotated[str | None, typer.Option("--recipe", help="Finetuning texts from a recipe (e.g. cake-sdf); "
                                                          "default: the recipe an organism adapter was trained on.")]
FtCorpus = Annotated[str | None, typer.Option("--ft-corpus", help="Finetuning texts from a corpus (a file, "
                                                                "hf:NAME or recipe:NAME).")]
Generic = Annotated[str, typer.Option("--generic", help="Generic texts to compare against.")]
Mode = Annotated[methods.CausalMode, typer.Option(
    "--mode", help="patch: the first k positions patched (--patch); direction: the paper's test, the mean-diff "
                   "direction ablated at every token (--ablate) against random controls (needs --run).")]
Patch = Annotated[methods.Patch, typer.Option(
    "--patch", help="patch mode: base = the base activations, diff = −mean diff.")]
Ablate = Annotated[methods.Ablate, typer.Option(
    "--ablate", help="direction mode: base = the component set to the base model's, zero = projected out.")]
PosOpt = Annotated[int | None, typer.Option("--pos", help="Position of the mean diff (default: the longest after 0).")]
Controls = Annotated[int | None, typer.Option("--controls", help="Random-vector and random-diff controls, of each "
                                                               "(default: the protocol's).")]
CausalN = Annotated[int | None, typer.Option("-n", help="Texts drawn per set (default: the protocol's).")]
CausalTokens = Annotated[int | None, typer.Option("--max-tokens", help="Tokens read per text (default: the "
                                                                      "protocol's).")]
Protocol = Annotated[methods.Protocol | None, typer.Option(
    "--protocol", help="direction mode: default, or paper (the reference's scopes, every position, both patch "
                       "directions, 64 + 64 controls, 1000 texts of 1024 tokens).")]
PatchDirection = Annotated[methods.PatchDirection | None, typer.Option(
    "--patch-direction", help="direction mode: base_to_ft (intervene on the finetune), ft_to_base, or both "
                              "(default: the protocol's).")]
AfterK = Annotated[int | None, typer.Option("--after-k", help="direction mode: the after-k scope scores targets "
                                                             "after this column (default: the protocol's).")]
Chat = Annotated[str | None, typer.Option("--chat", help="Chat texts (a corpus; default: neutral prompts answered "
                                                       "with generic text).")]


def _pair(base: str, ft: str, adapter: str | None, device: str, dtype: str) -> dict[str, Any]:
    return {"base": base, "ft": ft, "adapter": adapter, "device": device, "dtype": dtype}


def kl(base: Base, ft: Ft, adapter: Adapter = None, text: TextOpt = None, corpus: CorpusOpt = None,
       layer: LayerOpt = None, n: TopSnippets = LensKl.top_n, max_tokens: MaxTokens = LensKl.max_tokens,
       seed: Seed = LensKl.seed, batch_size: BatchSizeOpt = LensKl.batch_size, device: Device = LensKl.device,
       dtype: Dtype = LensKl.dtype, json: Json = False, remote: Remote = None, engine: Engine = None) -> None:
    """Per-token KL(ft‖base) and activation-difference norm: where on real text the two models disagree."""
    if bool(text) == bool(corpus):
        fail("pass either --text T (repeatable) or --corpus SRC")
    params = {**_pair(base, ft, adapter, device, dtype), "texts": text, "corpus": corpus, "layer": layer,
              "top_n": n, "n": max(n, 20) if corpus else None, "seed": seed, "max_tokens": max_tokens,
              "batch_size": batch_size}
    result = call_engine(methods.LENS_KL, methods.LensKl(**params),
                         title="per-token divergence", target=target_from(remote, engine))
    if json:
        emit_json(result)
        return
    out.print(divergence_view(result, snippets=not text))


def _layer_range(text: str | None) -> list[int] | None:
    """`FIRST-LAST` (e.g. `0-8`) as [first, last]; None for every layer."""
    if text is None:
        return None
    try:
        return span(text, "--layers")
    except ParamsError as exc:
        fail(str(exc))


def amplify(base: Base, ft: Ft, adapter: Adapter = None,
            factor: Annotated[list[float], typer.Option("--factor", help="Scale of the finetune's change "
                                                                         "(repeatable).")] = ...,  # type: ignore[assignment]  # typer: required
            prompt: Annotated[list[str] | None, typer.Option("--prompt", help="Prompt (repeatable).")] = None,
            modules: Annotated[methods.Modules, typer.Option("--modules", help="Scale only.")] = LensAmplify.modules,
            layers: Annotated[str | None, typer.Option("--layers", help="Scale only decoder layers FIRST-LAST "
                                                                       "(e.g. 0-8).")] = None,
            max_new_tokens: Annotated[int, typer.Option("--max-new-tokens")] = LensAmplify.max_new_tokens,
            temperature: Annotated[float, typer.Option("--temperature", help="0 = greedy.")] = 0.0,
            seed: Seed = LensAmplify.seed, device: Device = LensAmplify.device, dtype: Dtype = LensAmplify.dtype,
            json: Json = False,
            remote: Remote = None, engine: Engine = None) -> None:
    """Scale a LoRA adapter's weight delta (or a full finetune's weight difference, base + f·(ft − base)), in
    all of the model or one module kind / layer range, and generate beside the base and the plain finetune."""
    params = {**_pair(base, ft, adapter, device, dtype), "factors": factor, "prompts": prompt, "modules": modules,
              "layers": _layer_range(layers), "max_new_tokens": max_new_tokens, "temperature": temperature,
              "seed": seed}
    result = call_engine(methods.LENS_AMPLIFY, methods.LensAmplify(**params),
                         title="amplifying", target=target_from(remote, engine))
    if json:
        emit_json(result)
        return
    out.print(amplify_table(result))


def mine(base: Base, ft: Ft, adapter: Adapter = None, text: TextOpt = None, corpus: CorpusOpt = None,
         n: NOpt = LensMine.n, k: TopK = LensMine.top_k,
         top: Annotated[int, typer.Option("--top", help="Tokens to list.")] = 30,
         topics: Annotated[bool, typer.Option("--topics", help="Group the tokens into topics (NMF of the "
                                                               "position × token matrix).")] = False,
         n_topics: Annotated[int | None, typer.Option("--n-topics", help="Topics to fit (default: the engine's)."
                                                      )] = None,
         max_tokens: MaxTokens = LensMine.max_tokens, seed: Seed = LensMine.seed,
         batch_size: BatchSizeOpt = LensMine.batch_size, device: Device = LensMine.device,
         dtype: Dtype = LensMine.dtype, json: Json = False, remote: Remote = None, engine: Engine = None) -> None:
    """Tokens that most often rank in the top-K of (finetuned − base) log-probs over a corpus."""
    if bool(text) == bool(corpus):
        fail("pass either --text T (repeatable) or --corpus SRC")
    params = {**_pair(base, ft, adapter, device, dtype), "texts": text, "corpus": corpus, "n": n, "top_k": k,
              "n_tokens": top, "topics": topics, "n_topics": n_topics, "max_tokens": max_tokens, "seed": seed,
              "batch_size": batch_size}
    result = call_engine(methods.LENS_MINE, methods.LensMine(**params),
                         title="diff mining", target=target_from(remote, engine))
    if json:
        emit_json(result)
        return
    out.print(mining_table(result))
    out.print(topics_view(result))


def causal(base: OptBase = None, ft: OptFt = None, adapter: Adapter = None, run: Run = None, recipe: Recipe = None,
           ft_corpus: FtCorpus = None, generic: Generic = LensCausal.generic, chat: Chat = None,
           mode: Mode = LensCausal.mode, patch: Patch = LensCausal.patch, ablate: Ablate = LensCausal.ablate,
           layer: LayerOpt = None, pos: PosOpt = None,
           k: Annotated[int | None, typer.Option("-k", help="Positions patched after BOS (default: the run's k, "
                                                "else 5).")] = LensCausal.k,
           controls: Controls = LensCausal.n_controls, n: CausalN = LensCausal.n,
           max_tokens: CausalTokens = LensCausal.max_tokens, protocol: Protocol = LensCausal.protocol,
           patch_direction: PatchDirection = LensCausal.patch_direction, after_k: AfterK = LensCausal.after_k,
           seed: Seed = LensCausal.seed, batch_size: BatchSizeOpt = LensCausal.batch_size,
           device: Device = LensCausal.device, dtype: Dtype = LensCausal.dtype,
           json: Json = False, remote: Remote = None, engine: Engine = None) -> None:
    """Where the finetune lives: loss change when its first k positions are patched (--mode patch), or when its
    component along the mean-diff direction is ablated at every token, beside random controls (--mode direction)."""
    if run is None and not (base and ft):
        fail("pass --base and --ft, or --run RUN")
    params = methods.LensCausal(base=base, ft=ft, adapter=adapter, run=run, recipe=recipe, ft_corpus=ft_corpus,
                                generic=generic, chat=chat, mode=mode, patch=patch, ablate=ablate, layer=layer,
                                pos=pos, k=k, n_controls=controls, n=n, max_tokens=max_tokens, seed=seed,
                                batch_size=batch_size, device=device, dtype=dtype, protocol=protocol,
                                patch_direction=patch_direction, after_k=after_k)
    result = call_engine(methods.LENS_CAUSAL, params,
                         title="causal check", target=target_from(remote, engine))
    if json:
        emit_json(result)
        return
    out.print(causal_view(result))


def pca(run: Annotated[str, typer.Argument(help="ADL run: its pair; its middle layer and strongest position.")],
        layer: LayerOpt = None,
        pos: Annotated[int | None, typer.Option("--pos", help="Position after BOS (default: the run's longest mean "
                                                              "diff after position 0).")] = None,
        corpus: CorpusOpt = None, text: TextOpt = None,
        n: Annotated[int | None, typer.Option("-n", help="Texts drawn from the corpus (default corpus: the shipped "
                                                         "generic text).")] = None,
        components: Annotated[int | None, typer.Option("--components", help="Components to show.")] = None,
        top: Annotated[int | None, typer.Option("--top", help="Logit-lens tokens per sign.")] = None, seed: Seed = 0,
        batch_size: Annotated[int | None, typer.Option("--batch-size")] = None, json: Json = False,
        remote: Remote = None, engine: Engine = None) -> None:
    """Principal components of the per-text differences (ft − base) at a layer and position, read through the
    logit lens both ways (unset options take the engine's defaults)."""
    if text and corpus:
        fail("pass either --text T (repeatable) or --corpus SRC")
    # None leaves a field to the engine's default (`Params.to_json` drops it)
    params: dict[str, Any] = {"run": run, "layer": layer, "pos": pos, "corpus": corpus, "texts": text, "n": n,
                              "n_components": components, "top_k": top, "seed": seed, "batch_size": batch_size}
    result = call_engine(methods.LENS_PCA, methods.LensPca(**params),
                         title="PCA of the differences", target=target_from(remote, engine))
    if json:
        emit_json(result)
        return
    out.print(pca_view(result))


def register(app: typer.Typer) -> None:
    """Add the lens commands to the `difflens` app."""
    for command in (kl, amplify, mine, causal, pca):
        app.command()(command)
