"""The label value the loss skips: torch.nn.CrossEntropyLoss's default ignore_index.

A module of its own so that the built-in model's pre-training and the chat format can share it
without the download_model stage depending on the chat format (and, on the study, downloading
the base model again after an edit there)."""

IGNORE_INDEX = -100
