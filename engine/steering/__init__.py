"""Steering with a difference vector: batched steered generation, strength calibration, similarity."""
