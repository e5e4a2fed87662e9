"""Answers kept whole: a method's finished answer, stored under a key made of its params and everything else it
depends on besides the store (`fingerprint`), is given back without running the op, so a cached report needs
neither a model nor torch. `rules` says which methods are kept and what each depends on; `memo` computes the
key, recalls and keeps. Plain Python: the engine answers from here while its ops are still importing torch."""
