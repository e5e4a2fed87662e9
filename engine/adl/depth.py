"""The paper's headline layer, computed one way everywhere.

The reference reads at relative depth 0.5; its toolkit turns that into `int(0.5 * (n_layers - 1))`
(layer 8 of 18, 13 of 28), and so does every difflens default that says "middle".
"""

from __future__ import annotations

MIDDLE_DEPTH = 0.5


def middle_layer(n_layers: int) -> int:
    """Decoder layer at relative depth 0.5 of a model with `n_layers` layers."""
    return max(0, int(MIDDLE_DEPTH * (n_layers - 1)))
