"""Training model organisms: LoRA finetunes on a recipe's documents (`organism_training`) and the shipped
demo adapters (`demo_organisms`). Above models, corpus and the organism catalogue (`engine.organisms`)."""
