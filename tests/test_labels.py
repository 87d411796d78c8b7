"""medqa_scale.model.labels: the ignored label is the one torch's cross-entropy skips by default.

Run: python -m pytest tests/test_labels.py -q
"""

import torch

from medqa_scale.model.labels import IGNORE_INDEX


def test_ignore_index_is_torchs_default_and_the_loss_skips_it():
    assert IGNORE_INDEX == torch.nn.CrossEntropyLoss().ignore_index
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    loss_all = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 0]))
    loss_first = torch.nn.functional.cross_entropy(logits, torch.tensor([0, IGNORE_INDEX]))
    assert loss_first < loss_all and torch.isclose(loss_first, torch.nn.functional.cross_entropy(logits[:1], torch.tensor([0])))
