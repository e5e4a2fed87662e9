"""Corpora of random generic text, and the k-token windows that ADL reads from them."""
