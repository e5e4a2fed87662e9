"""Train a model organism: a LoRA finetune (peft) of a base model on narrow documents.

The output is a standard peft adapter directory (so any peft user can load it) whose
`base_model_name_or_path` is the spec the user gave (e.g. `gemma-3-270m`), plus `organism.json` (what it
was trained on and what it should have learned) and `loss.json` (the loss curve). The directory is
written in a staging folder and renamed into place, so a cancelled or failed run leaves nothing behind.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from engine.corpus.windows import sample_self
from engine.errors import UserError
from engine.jobs import JobContext
from engine.models.device import resolve_placement
from engine.models.loading import LoadedModel, load_model
from engine.models.specs import ModelSpec, is_adapter_dir, parse_spec
from engine.organisms.checkpoints import CHECKPOINTS_DIR, checkpoint_steps, step_name
from engine.organisms.docs import GENERIC_TEXT, generic_count, generic_pool, meta_path, mix_generic, read_docs
from engine.training.encode import Encoded, collate, encode_docs
from store.atomic import write_text_atomic
from store.hashing import file_sha256, json_sha256

SELF_CORPUS = "self:"
SELF_BATCH = 64  # texts sampled from the base per generate call


@dataclass
class TrainSettings:
    """Everything besides the data that determines the adapter (recorded in organism.json)."""

    steps: int = 60
    lr: float = 2e-3
    lora_rank: int = 8
    lora_alpha: float | None = None  # default 2 × rank
    target_modules: list[str] | None = None  # default: every linear layer inside the MLP blocks
    batch_size: int = 8
    max_length: int = 64
    warmup_steps: int = 5
    mix_pretrain: float = 0.0
    seed: int = 0
    device: str = "auto"


def spec_text(spec: ModelSpec) -> str:
    """The spec string that `parse_spec` turns back into `spec` (minus any adapter)."""
    if spec.source == "hf" and spec.revision:
        return f"{spec.path}@{spec.revision}"
    return spec.path


def mlp_targets(model: torch.nn.Module) -> list[str]:
    """Leaf names of the linear layers inside MLP blocks (`gate_proj`, `up_proj`, `down_proj`, ...)."""
    from transformers.pytorch_utils import Conv1D

    leaves = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
              if isinstance(module, torch.nn.Linear | Conv1D) and ".mlp." in f".{name}"}
    if not leaves:
        raise UserError("cannot find MLP projections to put LoRA on", "pass target_modules explicitly")
    return sorted(leaves)


def _target_spec(model: torch.nn.Module, targets: list[str] | None) -> str | list[str]:
    """MLP targets as a regex over full module names, so attention layers named alike are not hit."""
    if targets:
        return targets
    return rf".*\.mlp\.({'|'.join(mlp_targets(model))})"


def _data_info(data: Path, info: dict[str, Any] | None) -> dict[str, Any]:
    if info is not None:
        return info
    sidecar = meta_path(data)
    if sidecar.is_file():
        return json.loads(sidecar.read_text())
    return {"type": "custom", "short": f"LoRA finetune on {data.name}",
            "long": f"A narrow LoRA finetune on the documents in {data.name}.", "key_facts": []}


def _generic_docs(corpus: Path | str | None, count: int, loaded: LoadedModel, max_length: int,
                  seed: int, ctx: JobContext) -> tuple[list[dict[str, str]], dict[str, str | None]]:
    """The pool of generic documents to mix in and how the organism records it (name and content hash).

    `self:` samples `count` texts of `max_length` tokens from the base model itself (before any adapter): data
    as close to the base's own distribution as offline training can get, which keeps a held-out generic text
    (`generic:`) honest for evaluating the organism."""
    if count == 0:
        return [], {"pretrain_corpus": None, "pretrain_sha256": None}
    if str(corpus) == SELF_CORPUS:
        windows = sample_self(loaded, count, max_length, seed, batch_size=min(SELF_BATCH, count),
                              on_batch=lambda done, total: ctx.progress(done, total, "sampling the base"))
        texts = loaded.tokenizer.batch_decode([list(w.ids[w.start:]) for w in windows], skip_special_tokens=True)
        pool = [{"text": " ".join(t.split())} for t in texts if t.strip()]
        return pool, {"pretrain_corpus": SELF_CORPUS, "pretrain_sha256": json_sha256([d["text"] for d in pool])}
    path = Path(corpus) if corpus else None
    return generic_pool(path), {"pretrain_corpus": str(path) if path else f"shipped:{GENERIC_TEXT.name}",
                                "pretrain_sha256": file_sha256(path or GENERIC_TEXT)}


def _format(docs: list[dict[str, Any]]) -> str:
    """`chat` when the finetuning documents are chats (its runs then read the chat corpus), else `text`."""
    return "chat" if any("messages" in d for d in docs) else "text"


def _check_out(out: Path) -> None:
    if out.exists() and not (out.is_dir() and (is_adapter_dir(out) or not any(out.iterdir()))):
        raise UserError(f"output {str(out)!r} exists and is not an organism directory",
                        "pass a new or empty directory, or an earlier organism's directory to overwrite")


def _lr_factor(step: int, settings: TrainSettings) -> float:
    """Linear warmup, then cosine decay to 10 % — stable for the short runs organisms need."""
    if step < settings.warmup_steps:
        return (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _train_loop(model: torch.nn.Module, encoded: list[Encoded], pad_id: int, device: torch.device,
                settings: TrainSettings, ctx: JobContext, keep: Callable[[int], None] | None = None,
                keep_steps: frozenset[int] = frozenset()) -> list[float]:
    """Train for `settings.steps`; after each step in `keep_steps`, `keep(step)` saves a checkpoint."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, settings))
    generator = torch.Generator().manual_seed(settings.seed)
    order: list[int] = []
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext())
    losses: list[float] = []
    model.train()
    for step in range(settings.steps):
        if len(order) < settings.batch_size:
            order.extend(torch.randperm(len(encoded), generator=generator).tolist())
        batch_idx, order = order[: settings.batch_size], order[settings.batch_size:]
        batch = {k: v.to(device) for k, v in collate([encoded[i] for i in batch_idx], pad_id).items()}
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(float(loss.detach()), 5))
        ctx.progress(step + 1, settings.steps, f"loss {losses[-1]:.4f}")
        if keep is not None and step + 1 in keep_steps:
            keep(step + 1)
    model.eval()
    return losses


def _load_for_training(base: ModelSpec, settings: TrainSettings) -> LoadedModel:
    if base.adapter:
        raise UserError("the base model already has an adapter", "train on a plain base model")
    placement = resolve_placement(settings.device, "float32")
    return load_model(base, placement)


def train_organism(base: ModelSpec | str, data: Path, out: Path, *, steps: int = 60, lr: float = 2e-3,
                   lora_rank: int = 8, mix_pretrain: float = 0.0, pretrain_corpus: Path | str | None = None,
                   seed: int = 0, ctx: JobContext | None = None, batch_size: int = 8, max_length: int = 64,
                   target_modules: list[str] | None = None, device: str = "auto",
                   info: dict[str, Any] | None = None, checkpoints: int = 0) -> dict[str, Any]:
    """Finetune `base` on `data` and write the organism to `out`; returns the organism.json contents.

    `checkpoints` adapters kept evenly along training go to `out/checkpoints/step-NNNN/` with the organism.

    `mix_pretrain` of the documents are generic text from `pretrain_corpus`: a file, `self:` (samples of the
    base model), or the shipped generic text when None."""
    from peft import LoraConfig, get_peft_model

    ctx = ctx or JobContext()
    base_spec = parse_spec(base) if isinstance(base, str) else base
    data, out = Path(data), Path(out)
    if steps < 1 or lora_rank < 1 or batch_size < 1 or max_length < 2 or lr <= 0:
        raise UserError("steps, lora_rank, batch_size must be ≥ 1, max_length ≥ 2 and lr > 0",
                        "pass positive training settings")
    _check_out(out)
    keep_steps = checkpoint_steps(steps, checkpoints)
    settings = TrainSettings(steps=steps, lr=lr, lora_rank=lora_rank, target_modules=target_modules,
                             batch_size=batch_size, max_length=max_length, mix_pretrain=mix_pretrain,
                             seed=seed, device=device, warmup_steps=max(1, min(5, steps // 10)))
    narrow = read_docs(data)
    # The loop draws steps × batch_size documents: a larger pool of generic texts would never be seen, and
    # sampling it from the base is the slow part of a short mixed run. mix_generic cycles the pool up to `count`.
    count = generic_count(len(narrow), mix_pretrain)
    started = time.monotonic()
    loaded = _load_for_training(base_spec, settings)
    pool, pretrain = _generic_docs(pretrain_corpus, min(count, steps * batch_size), loaded, max_length, seed, ctx)
    docs = mix_generic(narrow, mix_pretrain, pool, seed)
    encoded = encode_docs(loaded.tokenizer, docs, max_length)
    if not encoded:
        raise UserError(f"no trainable tokens in {data.name}", "check the documents are not empty")
    torch.manual_seed(seed)
    alpha = settings.lora_alpha or 2 * lora_rank
    lora = LoraConfig(r=lora_rank, lora_alpha=alpha,  # type: ignore[arg-type]  # peft scales by alpha / r: any number
                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                      target_modules=_target_spec(loaded.hf, target_modules))
    assert lora.target_modules is not None  # set just above
    model = get_peft_model(loaded.hf, lora)
    staging = _staging(out) if keep_steps else None  # checkpoints wait there for the organism
    try:
        def keep(step: int) -> None:
            assert staging is not None  # made above whenever there are steps to keep
            _save_adapter(model, staging / CHECKPOINTS_DIR / step_name(step), spec_text(base_spec))

        losses = _train_loop(model, encoded, loaded.tokenizer.pad_token_id, loaded.input_device, settings,
                             ctx, keep, frozenset(keep_steps))
        organism = _organism(base_spec, data, narrow, docs, pretrain, info, settings, alpha, lora, losses,
                             keep_steps, started)
        staging = staging or _staging(out)
        _save(model, staging, out, organism, losses)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return organism


def _organism(base_spec: ModelSpec, data: Path, narrow: list[dict[str, Any]], docs: list[dict[str, Any]],
              pretrain: dict[str, Any], info: dict[str, Any] | None, settings: TrainSettings, alpha: float,
              lora: Any, losses: list[float], keep_steps: list[int], started: float) -> dict[str, Any]:
    """What organism.json records: the data, the settings, the loss and the checkpoints kept."""
    described = _data_info(data, info)
    organism = {
        "base": spec_text(base_spec), "type": described.get("type", "custom"), "format": _format(narrow),
        "short": described.get("short", ""), "long": described.get("long", ""),
        "key_facts": described.get("key_facts", []), "recipe": described.get("recipe"),
        "data": {"file": data.name, "sha256": file_sha256(data), "n_docs": len(narrow),
                 "n_generic": len(docs) - len(narrow),
                 **pretrain},
        "settings": {**asdict(settings), "lora_alpha": alpha, "target_modules": lora.target_modules
                     if isinstance(lora.target_modules, str) else sorted(lora.target_modules)},
        "final_loss": round(sum(losses[-5:]) / len(losses[-5:]), 5), "first_loss": losses[0],
        "train_seconds": round(time.monotonic() - started, 1),
        **({"checkpoints": [step_name(step) for step in keep_steps]} if keep_steps else {}),
    }
    return organism


def _staging(out: Path) -> Path:
    """A fresh folder beside `out` that becomes `out` when training is done (so a failed run leaves nothing)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))


def _save_adapter(model: Any, folder: Path, base: str) -> None:
    """The peft adapter in `folder`, naming `base` as its base model (the spec it was trained from)."""
    model.save_pretrained(folder)
    (folder / "README.md").unlink(missing_ok=True)  # peft's empty model-card template
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base
    write_text_atomic(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def _save(model: Any, staging: Path, out: Path, organism: dict[str, Any], losses: list[float]) -> None:
    """Write the adapter + organism.json + loss.json into `staging` (beside its checkpoints) and rename it."""
    _save_adapter(model, staging, organism["base"])
    write_text_atomic(staging / "organism.json", json.dumps(organism, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(staging / "loss.json",
                      json.dumps({"step": list(range(1, len(losses) + 1)), "loss": losses}) + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
