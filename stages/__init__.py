"""DVC stages of the fine-tuning data-scale study; one module per stage, plus shared helpers."""
