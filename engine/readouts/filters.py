"""Which readout tokens carry no meaning of their own (punctuation, whitespace, stop words, specials).

Such tokens top almost every readout whatever the finetune, so relevance scoring and the offline
Patchscope criterion skip them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Markers tokenizers put on word starts / whitespace (SentencePiece, byte-level BPE).
_MARKERS = str.maketrans("", "", "▁Ġ")
_PUNCT_ONLY = re.compile(r"^[\W_]+$")
_AFFIXES = {"'s", "'t", "'re", "'ve", "'ll", "'d", "'m", "ing", "ed", "ly", "es", "er"}
STOP_WORDS = frozenset({
    "a", "an", "the", "and", "or", "but", "nor", "so", "yet", "if", "then", "than", "that", "this", "these",
    "those", "there", "here", "in", "on", "at", "to", "for", "of", "with", "by", "from", "up", "about", "into",
    "through", "during", "before", "after", "above", "below", "between", "among", "over", "under", "out",
    "off", "as", "is", "are", "was", "were", "be", "been", "being", "am", "have", "has", "had", "do", "does",
    "did", "will", "would", "could", "should", "may", "might", "must", "can", "shall", "not", "no", "it",
    "its", "i", "you", "he", "she", "we", "they", "me", "him", "her", "us", "them", "my", "your", "his", "our",
    "their", "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "all", "any", "both",
    "each", "few", "more", "most", "other", "some", "such", "only", "own", "same", "too", "very", "just",
    "also",
})


def is_trivial_token(token: str, special_tokens: Iterable[str] = ()) -> bool:
    """True for tokens that say nothing about a domain: empty, one character, punctuation, stop words."""
    if token in set(special_tokens):
        return True
    core = token.translate(_MARKERS).strip()
    if len(core) <= 1 or _PUNCT_ONLY.match(core):
        return True
    if core.startswith("<") and core.endswith(">"):  # special / control tokens like <eos>, <unused3>
        return True
    lowered = core.lower()
    return lowered in STOP_WORDS or lowered in _AFFIXES


def normalise_token(token: str) -> str:
    """Case- and marker-free form, so ` Cake`, `▁cake` and `cake` compare equal."""
    return token.translate(_MARKERS).strip().lower()
