"""ADL step 2 on a cached run: cached readouts, steering and the triage report built from them."""
