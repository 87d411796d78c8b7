"""The study's results as one table, the training curves as one long table, and the summary
that `dvc metrics diff` compares: pure functions of the per-run metrics files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medqa_scale.durable import read_json
from medqa_scale.params import BASE_RUN, REFERENCE_RUNS, run_name, scale_size

QUALITY = ["rouge-1", "rouge-2", "rouge-l", "bleu", "char-bleu-4"]


def results_table(runs: list[tuple[str, str]], train_dir: Path, evaluate_dir: Path) -> pd.DataFrame:
    """One row per run, the base model and the 4-bit base first, from metrics/train/<run>.json and
    metrics/evaluate/<run>.json."""
    rows = [{"run": ref, "method": ref, "scale": "0", "n_train": 0, **_eval_columns(evaluate_dir, ref)}
            for ref in REFERENCE_RUNS]
    for method, scale in runs:
        run = run_name(method, scale)
        t = read_json(train_dir / f"{run}.json")
        rows.append({"run": run, "method": method, "scale": scale, "n_train": scale_size(scale),
                     **_eval_columns(evaluate_dir, run),
                     "train_runtime_s": t["train_runtime_s"], "train_tokens_per_second": t["tokens_per_second"],
                     "train_peak_memory_mb": t["peak_memory_mb"], "train_peak_memory_kind": t["peak_memory_kind"],
                     "best_eval_loss": t["best_eval_loss"], "trainable_params": t["trainable_params"],
                     "produced_on": t["produced_on"]})
    return pd.DataFrame(rows)


def _eval_columns(evaluate_dir: Path, run: str) -> dict:
    e = read_json(evaluate_dir / f"{run}.json")
    bounds = {f"{k}_{end}": e["interval"][k][end] for k in QUALITY for end in ("low", "high")}
    return {**{k: e[k] for k in QUALITY}, **bounds, "samples_per_second": e["samples_per_second"],
            "tokens_per_second": e["tokens_per_second"], "eval_peak_memory_mb": e["peak_memory_mb"]}


def loss_curves(runs: list[tuple[str, int]], dvclive_dir: Path) -> pd.DataFrame:
    """Long table run/series/samples_seen/loss from each run's DVCLive logs.

    Steps are optimizer steps; the epoch logged at each maps it to training samples seen, which
    puts runs of every scale on one axis.
    """
    frames = []
    for run, n_train in runs:
        metrics = dvclive_dir / run / "plots" / "metrics"
        epochs = pd.read_csv(metrics / "epoch.tsv", sep="\t")
        for series, name in (("train", "train/loss.tsv"), ("eval", "eval/loss.tsv")):
            df = pd.read_csv(metrics / name, sep="\t").merge(epochs, on="step")
            frames.append(df.assign(run=run, series=series, samples_seen=df.epoch * n_train)
                          [["run", "series", "samples_seen", "loss"]])
    return pd.concat(frames, ignore_index=True)


def summary(table: pd.DataFrame) -> dict:
    """The best run by ROUGE-L and its gain over the base model."""
    base = table[table.run == BASE_RUN].iloc[0]
    tuned = table[~table.run.isin(REFERENCE_RUNS)]
    best = tuned.loc[tuned["rouge-l"].idxmax()]
    return {"best_run": best.run, "best_rouge_l": float(best["rouge-l"]), "best_bleu": float(best["bleu"]),
            "base_rouge_l": float(base["rouge-l"]), "base_bleu": float(base["bleu"]),
            "best_gain_rouge_l": float(best["rouge-l"] - base["rouge-l"]),
            "runs_beating_base_rouge_l": int((tuned["rouge-l"] > base["rouge-l"]).sum()), "runs": len(tuned)}
