"""Readouts of activation-difference vectors: logit lens, Patchscope and token relevance.

Every function takes a `LoadedModel` and tensors; results are plain dataclasses of CPU tensors and
strings, so the caller can cache them in the store and show them in the TUI.
"""
