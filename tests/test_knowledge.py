"""Exam accuracy as a compared metric (medqa_scale.evaluate.knowledge): per-item results of each
seed become a setup's accuracy with a two-level bootstrap, paired with its reference on the same
items; retention losses beyond the limit are flagged. Constructed results, known answers.

Run: python -m pytest tests/test_knowledge.py -q
"""

from __future__ import annotations

import pytest

from medqa_scale.evaluate.comparison import compare
from medqa_scale.evaluate.knowledge import add_sets, metric_of, retention_flags, set_setups


def rows(pattern: str, set_name: str = "domain") -> list[dict]:
    return [{"set": set_name, "id": f"{set_name}:{i}", "correct": c == "1"} for i, c in enumerate(pattern)]


def test_a_setups_accuracy_is_the_mean_over_its_seeds_and_pairs_with_its_reference():
    base = rows("1000000000" * 4)  # 10%
    tuned = [rows("1110000000" * 4), rows("1111000000" * 4)]  # 30% and 40%
    out = set_setups({"base": [base], "lora-1k": tuned}, "domain", resamples=2000, seed=1)
    metric = metric_of("domain")
    assert out["lora-1k"].values[metric].tolist() == [30.0, 40.0] and out["base"].values[metric].tolist() == [10.0]
    row = compare(out["lora-1k"], out["base"], [metric], 0.95)
    assert row[f"{metric}_diff"] == pytest.approx(25.0)
    assert row[f"{metric}_diff_low"] > 0 and row[f"{metric}_p"] < 0.01


def test_runs_scored_on_other_items_cannot_be_compared():
    with pytest.raises(ValueError, match="other test questions"):
        set_setups({"base": [rows("10")], "lora-1k": [rows("101")]}, "domain", resamples=10, seed=1)


def test_sets_join_the_setups_other_metrics_and_retention_losses_are_flagged():
    from medqa_scale.evaluate.comparison import Setup
    import numpy as np

    compared = {name: Setup(name, {"nll": np.array([1.0])}, {"nll": np.zeros(10)}) for name in ("base", "lora-1k")}
    results = {"base": [rows("11110000", "domain") + rows("11111111", "general")],
               "lora-1k": [rows("11111100", "domain") + rows("11110000", "general")]}
    added = add_sets(compared, results, ["domain", "general"], resamples=500, seed=2)
    assert added == ["acc-domain", "acc-general"] and set(compared["lora-1k"].values) == {"nll", "acc-domain", "acc-general"}
    pair = compare(compared["lora-1k"], compared["base"], added, 0.95)
    assert pair["acc-domain_diff"] == 25.0 and pair["acc-general_diff"] == -50.0
    pairs = [{"a": "lora-1k", "b": "base", **pair}]
    assert retention_flags(pairs, {"lora-1k": "base"}, ["general"], max_drop=2.0) == {"lora-1k": ["general"]}
    assert retention_flags(pairs, {"lora-1k": "base"}, ["general"], max_drop=60.0) == {"lora-1k": []}
