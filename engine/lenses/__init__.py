"""Lenses beside ADL on the same pair: where the models disagree on real text (`kl`), the adapter's
behaviour exaggerated (`amplify`), which tokens the finetune pushes up (`mining`) and how much of the
finetune lives in the first positions' activations (`causal`). Each result is cached in the store."""
