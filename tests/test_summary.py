"""medqa_scale.summary: the results table, the loss curves on one axis, and the summary.

Run: python -m pytest tests/test_summary.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medqa_scale.summary import QUALITY, loss_curves, results_table, summary


def write_run(root: Path, run: str, rouge_l: float, train: bool = True) -> None:
    (root / "evaluate").mkdir(parents=True, exist_ok=True)
    (root / "train").mkdir(parents=True, exist_ok=True)
    scores = {"rouge-1": rouge_l + 10, "rouge-2": rouge_l - 10, "rouge-l": rouge_l, "bleu": rouge_l / 2,
              "char-bleu-4": rouge_l / 3, "samples_per_second": 3.0, "tokens_per_second": 30.0, "peak_memory_mb": 700.0}
    scores["interval"] = {k: {"low": v - 2, "high": v + 3} for k, v in list(scores.items())[:5]}
    (root / "evaluate" / f"{run}.json").write_text(json.dumps(scores))
    if train:
        (root / "train" / f"{run}.json").write_text(json.dumps({
            "train_runtime_s": 12.5, "tokens_per_second": 900.0, "peak_memory_mb": 750.0,
            "peak_memory_kind": "cuda_max_allocated", "produced_on": "Qwen/Qwen2.5-3B-Instruct, bf16 on NVIDIA H100",
            "best_eval_loss": 2.0, "trainable_params": 1000}))


@pytest.fixture
def metrics(tmp_path):
    write_run(tmp_path, "base", 18.0, train=False)
    write_run(tmp_path, "base-4bit", 16.0, train=False)
    for run, score in (("lora-1k", 30.0), ("lora-2k", 48.0), ("qlora-1k", 32.0), ("qlora-2k", 43.0)):
        write_run(tmp_path, run, score)
    write_run(tmp_path, "lora-9k", 99.0)  # a stale run from other params: must be ignored
    return tmp_path


RUNS = [("lora", "1k"), ("lora", "2k"), ("qlora", "1k"), ("qlora", "2k")]


def test_results_table_has_the_base_row_first_and_one_row_per_run(metrics):
    table = results_table(RUNS, metrics / "train", metrics / "evaluate")
    assert list(table.run) == ["base", "base-4bit", "lora-1k", "lora-2k", "qlora-1k", "qlora-2k"]
    assert list(table.n_train) == [0, 0, 1000, 2000, 1000, 2000]
    assert list(table.method) == ["base", "base-4bit", "lora", "lora", "qlora", "qlora"]
    assert table.loc[1, "rouge-l"] == 16.0  # the 4-bit base: QLoRA's own reference
    assert table.loc[3, "rouge-l"] == 48.0 and table.loc[3, "bleu"] == 24.0
    assert (table.loc[3, "rouge-l_low"], table.loc[3, "rouge-l_high"]) == (46.0, 51.0)
    assert table.loc[2, "train_runtime_s"] == 12.5 and table.loc[2, "train_peak_memory_mb"] == 750.0
    assert set(QUALITY) <= set(table.columns)


def test_summary_names_the_best_run_and_its_gain_over_the_base_model(metrics):
    s = summary(results_table(RUNS, metrics / "train", metrics / "evaluate"))
    assert s["best_run"] == "lora-2k" and s["best_rouge_l"] == 48.0
    assert s["best_gain_rouge_l"] == pytest.approx(30.0)
    assert s["runs_beating_base_rouge_l"] == 4 and s["runs"] == 4
    assert s["base_bleu"] == 9.0


def test_loss_curves_put_every_scale_on_the_samples_seen_axis(tmp_path):
    for run in ("lora-1k", "lora-2k"):
        d = tmp_path / run / "plots" / "metrics"
        (d / "eval").mkdir(parents=True)
        (d / "train").mkdir(parents=True)
        (d / "epoch.tsv").write_text("step\tepoch\n0\t0.5\n1\t1.0\n")
        (d / "train" / "loss.tsv").write_text("step\tloss\n0\t3.0\n1\t2.0\n")
        (d / "eval" / "loss.tsv").write_text("step\tloss\n1\t2.5\n")
    curves = loss_curves([("lora-1k", 1000), ("lora-2k", 2000)], tmp_path)
    train = curves[(curves.run == "lora-2k") & (curves.series == "train")]
    assert list(train.samples_seen) == [1000.0, 2000.0] and list(train.loss) == [3.0, 2.0]
    evals = curves[curves.series == "eval"]
    assert list(evals.samples_seen) == [1000.0, 2000.0] and list(evals.loss) == [2.5, 2.5]
