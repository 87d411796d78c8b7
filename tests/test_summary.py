"""medqa_scale.evaluate.summary: the results table, the loss curves on one axis, and the summary.

Run: python -m pytest tests/test_summary.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from medqa_scale.evaluate.summary import QUALITY, curves_table, loss_curves, runs_table, setups_table, summary


def write_run(root: Path, run: str, rouge_l: float, train: bool = True) -> None:
    for part in ("likelihood", "evaluate", "generate", "train"):
        (root / part).mkdir(parents=True, exist_ok=True)
    scores = {"rouge-1": rouge_l + 10, "rouge-2": rouge_l - 10, "rouge-l": rouge_l, "bleu": rouge_l / 2,
              "lf-rouge-1": rouge_l + 11, "lf-rouge-2": rouge_l - 9, "lf-rouge-l": rouge_l + 1, "char-bleu-4": rouge_l / 3}
    interval = {k: {"low": v - 2, "high": v + 3} for k, v in scores.items()}
    health = {"ran_to_max_new_tokens": 0.005, "repeated_4grams": 0.1, "length_ratio": 0.9, "broken_characters": 0.0}
    (root / "evaluate" / f"{run}.json").write_text(json.dumps({**scores, "n_test": 200, "health": health, "interval": interval}))
    nll = 3 - rouge_l / 50  # better runs: lower NLL
    (root / "likelihood" / f"{run}.json").write_text(json.dumps({
        "nll": nll, "perplexity": 2.718281828 ** nll, "interval": {"nll": {"low": nll - 0.05, "high": nll + 0.05}}}))
    (root / "generate" / f"{run}.json").write_text(json.dumps({
        "samples_per_second": 3.0, "tokens_per_second": 30.0, "peak_memory_mb": 700.0, "ran_to_max_new_tokens": 1}))
    if train:
        (root / "train" / f"{run}.json").write_text(json.dumps({
            "train_runtime_s": rouge_l / 4, "tokens_per_second": 900.0, "peak_memory_mb": 750.0,
            "peak_memory_kind": "cuda_max_allocated", "produced_on": "Qwen/Qwen2.5-3B-Instruct, bf16 on NVIDIA H100",
            "best_eval_loss": 2.0, "trainable_params": 1000}))


@pytest.fixture
def metrics(tmp_path):
    write_run(tmp_path, "base", 18.0, train=False)
    write_run(tmp_path, "base-4bit", 16.0, train=False)
    for run, score in (("lora-1k-42", 30.0), ("lora-1k-43", 34.0), ("lora-2k-42", 48.0), ("lora-2k-43", 50.0),
                       ("qlora-1k-42", 32.0), ("qlora-1k-43", 32.0), ("qlora-2k-42", 43.0), ("qlora-2k-43", 45.0)):
        write_run(tmp_path, run, score)
    write_run(tmp_path, "lora-9k-42", 99.0)  # a stale run from other params: must be ignored
    return tmp_path


RUNS = [(m, s, seed) for m in ("lora", "qlora") for s in ("1k", "2k") for seed in (42, 43)]


def test_the_runs_table_has_the_references_first_and_one_row_per_seed(metrics):
    table = runs_table(RUNS, metrics)
    assert list(table.run[:4]) == ["base", "base-4bit", "lora-1k-42", "lora-1k-43"] and len(table) == 10
    assert list(table.setup[:4]) == ["base", "base-4bit", "lora-1k", "lora-1k"]
    assert list(table.n_train[:4]) == [0, 0, 1000, 1000] and table.seed[3] == 43
    assert table.loc[1, "rouge-l"] == 16.0  # the 4-bit base: QLoRA's own reference
    assert table.loc[4, "rouge-l"] == 48.0 and table.loc[4, "bleu"] == 24.0
    assert (table.loc[4, "rouge-l_low"], table.loc[4, "rouge-l_high"]) == (46.0, 51.0)
    assert table.loc[2, "train_runtime_s"] == 7.5 and table.loc[2, "train_peak_memory_mb"] == 750.0
    assert table.loc[2, "samples_per_second"] == 3.0 and table.loc[2, "n_test"] == 200
    assert set(QUALITY) <= set(table.columns)


def setups_of(runs):
    quality = {}
    for setup, group in runs.groupby("setup", sort=False):
        quality[setup] = {"seeds": len(group), **{k: group[k].mean() for k in ["nll", *QUALITY]},
                          **{f"{k}_{end}": group[f"{k}_{end}"].mean() for k in ["nll", *QUALITY] for end in ("low", "high")}}
    return setups_table(runs, quality)


def test_the_setups_table_has_one_row_per_method_and_scale_with_the_mean_cost(metrics):
    table = setups_of(runs_table(RUNS, metrics))
    assert list(table.run) == ["base", "base-4bit", "lora-1k", "lora-2k", "qlora-1k", "qlora-2k"]
    assert list(table.method) == ["base", "base-4bit", "lora", "lora", "qlora", "qlora"]
    assert table.loc[2, "rouge-l"] == 32.0 and table.loc[2, "seeds"] == 2
    assert table.loc[2, "train_runtime_s"] == pytest.approx(8.0)  # mean of 7.5 and 8.5
    assert pd.isna(table.loc[0, "train_runtime_s"]) and table.loc[0, "samples_per_second"] == 3.0


def choice(best, pick, qualifying, metric="nll"):
    return {"metric": metric, "best": best, "choice": pick, "qualifying": qualifying}


def test_summary_names_the_primary_metric_the_best_setup_the_verdict_and_the_references(metrics):
    table = setups_of(runs_table(RUNS, metrics))
    s = summary(table, choice("lora-2k", "lora-1k", ["lora-1k", "lora-2k"]), choice("lora-2k", "lora-2k", ["lora-2k"], "rouge-l"))
    assert s["primary_metric"] == "nll" and s["best_run"] == "lora-2k"
    assert s["best_nll"] == pytest.approx(3 - 49 / 50) and s["best_nll_low"] == pytest.approx(3 - 49 / 50 - 0.05)
    assert s["best_rouge_l"] == 49.0 and s["best_bleu"] == 24.5
    assert s["most_cost_effective"] == "lora-1k" and s["most_cost_effective_train_runtime_s"] == pytest.approx(8.0)
    assert s["most_cost_effective_nll"] == pytest.approx(3 - 32 / 50)
    assert s["base_nll"] == pytest.approx(3 - 18 / 50) and s["base_bleu"] == 9.0
    assert s["qualifying_setups"] == 2 and s["setups"] == 4
    assert s["rouge_l_verdict"] == "lora-2k" and s["rouge_l_verdict_agrees"] is False
    assert s["best_train_s"] == pytest.approx(12.25) and s["best_train_mb"] == 750.0
    # The order is `dvc exp show`'s column order: what people compare first.
    assert list(s)[:8] == ["primary_metric", "best_run", "best_nll", "best_nll_low", "best_nll_high", "best_rouge_l",
                           "best_bleu", "best_train_s"]


def test_without_a_qualifying_setup_the_summary_names_none(metrics):
    table = setups_of(runs_table(RUNS, metrics))
    s = summary(table, choice(None, None, []), choice(None, None, [], "rouge-l"))
    assert s["best_run"] is None and s["most_cost_effective"] is None and s["best_nll"] is None
    assert s["qualifying_setups"] == 0 and s["rouge_l_verdict_agrees"] is True
    json.dumps(s)  # null, not NaN: `dvc metrics show` reads it


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


def test_the_curves_dvc_plots_draws_have_a_column_per_series_empty_where_it_has_no_point():
    curves = pd.DataFrame([("a", "train", 500.2, 3.0), ("a", "train", 1000.0, 2.0), ("a", "eval", 1000.0, 2.5),
                           ("b", "train", 2000.0, 1.5)], columns=["run", "series", "samples_seen", "loss"])
    table = curves_table(curves)
    assert list(table.columns) == ["run", "samples_seen", "train_loss", "eval_loss"]
    assert table[["run", "samples_seen", "train_loss"]].values.tolist() == [["a", 500.0, 3.0], ["a", 1000.0, 2.0],
                                                                             ["b", 2000.0, 1.5]]
    assert table.eval_loss.isna().tolist() == [True, False, True] and table.eval_loss[1] == 2.5
    no_eval = curves_table(curves[curves.series == "train"])  # eval off: the column is still there, empty
    assert list(no_eval.columns) == list(table.columns) and no_eval.eval_loss.isna().all()
