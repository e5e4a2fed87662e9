"""The store: safetensors files addressed by content hash, with SQLite metadata.

Torch-free on purpose: the TUI replays sessions through this package alone (numpy reads the tensors).
"""
