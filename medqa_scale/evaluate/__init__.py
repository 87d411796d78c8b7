"""Evaluation: greedy answers, ROUGE and BLEU, paired comparisons over seeds and the verdict, the
results tables, figures and report. Imports core and model."""
