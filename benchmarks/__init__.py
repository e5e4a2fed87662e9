"""difflens benchmarks: every step timed side by side with the straightforward way and with its floor.

`python -m benchmarks [--quick] [--json]` (or `difflens bench`) runs them all in one invocation. Ratios
are measured interleaved batch by batch in one process, so load from other users of a shared machine
hits every method alike and cancels in the ratio; absolute figures are printed with the device named.
"""
