"""Triage: one pair from models to a readable report (`pair_triage`), and the board that triages many
pairs unattended, scored, ranked and recorded in the store.

`pairs` reads pairs.yaml / pairs.csv, `order` plans the run order, `score` defines the trace strength,
`hypothesis` picks the one-line hypothesis, `state` records the board in SQLite and `board` runs it."""
