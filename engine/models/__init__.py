"""Model specs, loading, and the base/finetuned pair that every computation runs on."""
