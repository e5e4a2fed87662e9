"""The triage board: many model pairs triaged unattended, scored, ranked and recorded in the store.

`pairs` reads pairs.yaml / pairs.csv, `order` plans the run order, `score` defines the trace strength,
`hypothesis` picks the one-line hypothesis, `state` records the board in SQLite and `board` runs it."""
