"""Stage summarize: one table and three figures comparing every run with the base model.

Run:    dvc repro summarize         (or: python -m stages.summarize)
Reads:  metrics/evaluate/<run>.json, metrics/train/<run>.json, dvclive/<run>/ for the runs that
        params methods x split.scales name (stale files from other params are ignored)
Writes: plots/results_summary.csv (one row per run, the base row first)
        plots/data_scale_comparison.png (quality and cost against training-set size)
        plots/method_comparison.png (LoRA against QLoRA at each scale)
        plots/loss_curves.png (train and eval loss of every run)
        metrics/summary.json (best run and its gain over the base model, for `dvc metrics diff`)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")  # files only, no display; before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from stages.atomic import atomic_path, write_json
from stages.params import load_params, run_name, scale_size
from stages.runinfo import cli

log = logging.getLogger(__name__)

QUALITY = ["rouge-1", "rouge-2", "rouge-l", "bleu"]
PLOTS = Path("plots")


def main() -> None:
    p = load_params()
    runs = [(m, str(s)) for m in p["methods"] for s in p["split"]["scales"]]
    table = results_table(runs)
    with atomic_path(PLOTS / "results_summary.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    curves = loss_curves([(run_name(m, s), scale_size(s)) for m, s in runs])
    plot_scale_comparison(table, PLOTS / "data_scale_comparison.png")
    plot_method_comparison(table, PLOTS / "method_comparison.png")
    plot_loss_curves(curves, PLOTS / "loss_curves.png")
    write_json("metrics/summary.json", summary(table))
    log.info("summary of %d runs:\n%s", len(table), table[["run", "rouge-l", "bleu", "train_runtime"]].to_string(index=False))


def _read(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def results_table(runs: list[tuple[str, str]]) -> pd.DataFrame:
    rows = [{"run": "base", "method": "base", "scale": "0", "n_train": 0, **_eval_columns("base")}]
    for method, scale in runs:
        run = run_name(method, scale)
        t = _read(Path("metrics/train") / f"{run}.json")
        rows.append({"run": run, "method": method, "scale": scale, "n_train": scale_size(scale), **_eval_columns(run),
                     "train_runtime": t["train_runtime"], "train_tokens_per_second": t["tokens_per_second"],
                     "train_peak_memory_mb": t["peak_memory_mb"], "best_eval_loss": t["best_eval_loss"],
                     "trainable_params": t["trainable_params"]})
    return pd.DataFrame(rows)


def _eval_columns(run: str) -> dict:
    e = _read(Path("metrics/evaluate") / f"{run}.json")
    return {**{k: e[k] for k in QUALITY}, "samples_per_second": e["samples_per_second"],
            "tokens_per_second": e["tokens_per_second"], "eval_peak_memory_mb": e["peak_memory_mb"]}


def loss_curves(runs: list[tuple[str, int]]) -> pd.DataFrame:
    """Long table run/series/samples_seen/loss from each run's DVCLive logs.

    DVCLive counts one step per Trainer log; its epoch log maps that to training samples seen,
    which puts runs of every scale on one axis.
    """
    frames = []
    for run, n_train in runs:
        metrics = Path("dvclive") / run / "plots" / "metrics"
        epochs = pd.read_csv(metrics / "epoch.tsv", sep="\t")
        for series, name in (("train", "loss.tsv"), ("eval", "eval/loss.tsv")):
            df = pd.read_csv(metrics / name, sep="\t").merge(epochs, on="step")
            frames.append(df.assign(run=run, series=series, samples_seen=df.epoch * n_train)
                          [["run", "series", "samples_seen", "loss"]])
    return pd.concat(frames, ignore_index=True)


def summary(table: pd.DataFrame) -> dict:
    base = table[table.run == "base"].iloc[0]
    tuned = table[table.run != "base"]
    best = tuned.loc[tuned["rouge-l"].idxmax()]
    return {"best_run": best.run, "best_rouge_l": float(best["rouge-l"]), "best_bleu": float(best["bleu"]),
            "base_rouge_l": float(base["rouge-l"]), "base_bleu": float(base["bleu"]),
            "best_gain_rouge_l": float(best["rouge-l"] - base["rouge-l"]),
            "runs_beating_base_rouge_l": int((tuned["rouge-l"] > base["rouge-l"]).sum()), "runs": len(tuned)}


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})


def plot_scale_comparison(table: pd.DataFrame, path: Path) -> None:
    tuned, base = table[table.run != "base"], table[table.run == "base"].iloc[0]
    panels = [("rouge-l", "ROUGE-L F1"), ("bleu", "BLEU"), ("best_eval_loss", "best eval loss"),
              ("train_runtime", "training time (s)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (col, label) in zip(axes, panels):
        sns.lineplot(data=tuned, x="n_train", y=col, hue="method", marker="o", ax=ax)
        if col in QUALITY:
            ax.axhline(base[col], color="grey", linestyle="--", label="base model")
        ax.set(xscale="log", xlabel="training samples", ylabel="", title=label)
        ax.legend(fontsize=8)
    fig.suptitle("Data scale: what more training samples buy")
    _save(fig, path)
    plt.close(fig)


def plot_method_comparison(table: pd.DataFrame, path: Path) -> None:
    tuned = table[table.run != "base"]
    panels = [("rouge-l", "ROUGE-L F1"), ("train_peak_memory_mb", "training peak memory (MB)"),
              ("train_runtime", "training time (s)"), ("tokens_per_second", "inference tokens/s")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (col, label) in zip(axes, panels):
        sns.barplot(data=tuned, x="scale", y=col, hue="method", ax=ax)
        ax.set(xlabel="scale", ylabel="", title=label)
        ax.legend(fontsize=8)
    fig.suptitle("LoRA vs QLoRA at each scale")
    _save(fig, path)
    plt.close(fig)


def plot_loss_curves(curves: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, series in zip(axes, ("train", "eval")):
        data = curves[curves.series == series]
        if not data.empty:
            sns.lineplot(data=data, x="samples_seen", y="loss", hue="run", marker="o" if series == "eval" else None, ax=ax)
        ax.set(title=f"{series} loss", xlabel="training samples seen", ylabel="loss")
    fig.suptitle("Training curves")
    _save(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    cli(main)
