"""NDIF: the same nnsight traces, run on the National Deep Inference Fabric instead of this machine."""
