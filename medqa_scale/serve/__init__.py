"""Serving what the pipeline made: every run on one loaded base per precision, the test set's views,
the experiments DVC knows, and GGUF writing and checking. Imports core, model and evaluate."""
