"""The one part of the engine the TUI may import: plain Python, no torch, nothing else of the engine.

`wire` frames JSON-RPC messages, `paths` finds a local engine's socket and token, `methods` names every
engine method with its typed params.
"""
