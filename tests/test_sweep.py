"""medqa_scale.apps.sweep: one table and one figure across the experiments `dvc exp show --json` lists.

Run: python -m pytest -q tests/test_sweep.py
"""

from __future__ import annotations

import pytest

from medqa_scale.core.cli import PipelineError
from medqa_scale.apps.sweep import plot_sweep, sweep_table


def evaluation(score):
    return {"data": {"rouge-l": score, "bleu": score / 2,
                     "interval": {"rouge-l": {"low": score - 1, "high": score + 1}, "bleu": {"low": 0, "high": score}}}}


def entry(rev, name, lr, scores):
    metrics = {f"metrics/evaluate/{run}.json": evaluation(s) for run, s in scores.items()}
    metrics |= {f"metrics/benchmark/{run}.json": {"data": {"sets": {"retention": {"accuracy": 60.0 - s / 2}}}} for run, s in scores.items()}
    metrics["metrics/summary.json"] = {"data": {"best_run": "lora-2k"}}
    return {"rev": rev, "name": name, "data": {"params": {"params.yaml": {"data": {"seed": 42, "train": {"lr": lr, "seeds": [42]}}}},
                                               "metrics": metrics}}


SHOWN = [
    {**entry("workspace", None, 1e-4, {"base": 16.0, "lora-1k-42": 30.0, "lora-2k-42": 40.0}), "experiments": None},
    {**entry("a" * 40, "main", 1e-4, {"base": 16.0, "lora-1k-42": 30.0, "lora-2k-42": 40.0}),
     "experiments": [{"name": "lr-5e-5", "revs": [entry("b" * 40, "lr-5e-5", 5e-5, {"base": 16.0, "lora-1k-42": 25.0,
                                                                                      "lora-2k-42": 33.0})]},
                     {"name": "queued", "revs": [{"rev": "c" * 40, "name": "queued", "data": None}]}]},
]


def test_one_row_per_experiment_and_run_with_the_params_that_differ():
    table = sweep_table(SHOWN)
    assert list(table.experiment.unique()) == ["workspace", "main", "lr-5e-5"]  # the unfinished one is left out
    assert list(table.columns[:2]) == ["experiment", "train.lr"]  # seed and seeds are the same everywhere
    row = table[(table.experiment == "lr-5e-5") & (table.run == "lora-2k-42")].iloc[0]
    assert row["train.lr"] == 5e-5 and row["rouge-l"] == 33.0 and row["rouge-l_high"] == 34.0
    assert (row.method, row.scale, row.seed, row.n_train) == ("lora", "2k", 42, 2000)
    assert table[table.run == "base"].n_train.tolist() == [0, 0, 0]


def test_no_evaluated_experiment_is_one_clear_message():
    with pytest.raises(PipelineError, match="dvc exp run"):
        sweep_table([{"rev": "workspace", "name": None, "data": {"params": {}, "metrics": {}}, "experiments": None}])


def test_the_figure_is_a_png(tmp_path):
    plot_sweep(sweep_table(SHOWN), tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_runs_exam_accuracy_is_a_column_beside_its_scores():
    # The KL trade-off in one table: the domain gain and the retention each experiment's runs keep.
    table = sweep_table(SHOWN)
    row = table[(table.experiment == "lr-5e-5") & (table.run == "lora-2k-42")].iloc[0]
    assert row["acc-retention"] == 60.0 - 33.0 / 2
