"""Run-level results: what one cached ADL run yields once read (logit lens and Patchscope cells, judged
relevance, calibrated steering, the report layer, what is known of the finetune), each cached in the store
under the run. Named for what it holds: results of a run, built from the computations below (adl,
readouts, steering, judges) and read by the agent, the triage report and the ops above."""
