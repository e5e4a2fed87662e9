"""The Activation Difference Lens, step 1: mean activation differences on the first k tokens."""
