"""The summary figures: what more data buys, what each doubling of it bought, LoRA against QLoRA,
and the training curves.

PNG files, written atomically and without a timestamp, so an unchanged table gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")  # files only, no display; before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from medqa_scale.core.durable import atomic_path  # noqa: E402
from medqa_scale.core.params import BASE_4BIT_RUN, BASE_RUN, REFERENCE_RUNS  # noqa: E402
from medqa_scale.evaluate.summary import QUALITY  # noqa: E402


MEMORY_LABELS = {"cuda_max_allocated": "training peak GPU memory (MB)",
                 "cpu_rss_growth_over_loaded_model": "training memory growth over the loaded model (MB, CPU RSS)"}


def caption(table: pd.DataFrame) -> str:
    """Which model, precision and hardware produced the runs: a study figure never passes for another."""
    return "; ".join(sorted(set(table.produced_on.dropna()))) if "produced_on" in table else ""


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})


def plot_scale_comparison(table: pd.DataFrame, path: Path) -> None:
    tuned, base = table[~table.run.isin(REFERENCE_RUNS)], table[table.run == BASE_RUN].iloc[0]
    base_4bit = table[table.run == BASE_4BIT_RUN]
    panels = [("rouge-l", "ROUGE-L F1"), ("bleu", "BLEU"), ("best_eval_loss", "best eval loss"),
              ("train_runtime_s", "training time (s, steps only)")]
    if "win-rate" in tuned:  # the judge's (judge.enabled)
        panels.insert(2, ("win-rate", "judge win rate vs reference (%, ties half)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (col, label) in zip(axes, panels):
        sns.lineplot(data=tuned, x="n_train", y=col, hue="method", marker="o", ax=ax)
        if col == "win-rate":
            ax.axhline(50, color="grey", linestyle="--", label="no preference")
            for color, (_, rows) in zip(sns.color_palette(), tuned.groupby("method", sort=False)):
                ax.fill_between(rows.n_train, rows[f"{col}_low"], rows[f"{col}_high"], color=color, alpha=0.2)
        if col in QUALITY:
            ax.axhline(base[col], color="grey", linestyle="--", label="base model")
            if not base_4bit.empty:  # QLoRA's own reference: the base it trains on, 4-bit
                ax.axhline(base_4bit[col].iloc[0], color="grey", linestyle=":", label="4-bit base")
            if f"{col}_low" in tuned:  # the bootstrap interval of each run, as a band per method
                for color, (_, rows) in zip(sns.color_palette(), tuned.groupby("method", sort=False)):
                    ax.fill_between(rows.n_train, rows[f"{col}_low"], rows[f"{col}_high"], color=color, alpha=0.2)
        ax.set(xscale="log", xlabel="training samples", ylabel="", title=label)
        ax.legend(fontsize=8)
    fig.suptitle(f"Data scale: what more training samples buy\n{caption(tuned)}")
    _save(fig, path)
    plt.close(fig)


def plot_scaling(fits: dict[str, dict[str, dict]], metrics: dict[str, str], out: Path, caption: str | None = None) -> None:
    """One panel per metric (`metrics` maps its key to the axis label), training samples on a log2
    axis: for each method in `fits[method][metric]` (scaling.scaling_fit results) the scales with
    their intervals, the fitted line with its band, and the gain per doubling in the legend."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 4.2), squeeze=False)
    colors = dict(zip(fits, sns.color_palette()))
    for ax, (metric, label) in zip(axes[0], metrics.items()):
        sizes = set()
        for i, (method, by_metric) in enumerate(fits.items()):
            if metric not in by_metric:
                continue
            fit = by_metric[metric]
            n = np.array([s["n"] for s in fit["scales"]], dtype=float)
            value = np.array([s["value"] for s in fit["scales"]])
            # a point estimate may lie outside its percentile interval; errorbar refuses negative lengths
            err = np.clip([value - [s["low"] for s in fit["scales"]], [s["high"] for s in fit["scales"]] - value], 0, None)
            dodge = 2.0 ** (0.03 * (i - (len(fits) - 1) / 2))  # side by side, so the error bars do not hide each other
            gain = fit["per_doubling"]
            ax.errorbar(n * dodge, value, yerr=err, fmt="o", capsize=3, color=colors[method],
                        label=f"{method}: {gain['gain']:+.3g} per doubling [{gain['low']:+.3g}, {gain['high']:+.3g}]")
            line = {k: np.asarray(v) for k, v in fit["line"].items()}
            ax.plot(2.0 ** line["x"], line["fit"], color=colors[method])
            ax.fill_between(2.0 ** line["x"], line["low"], line["high"], color=colors[method], alpha=0.2)
            sizes.update(int(s) for s in n)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(sizes), [f"{s:,}" for s in sorted(sizes)])
        ax.xaxis.set_minor_locator(NullLocator())  # only the scales trained
        ax.set(xlabel="training samples (log2 scale)", ylabel="", title=label)
        ax.legend(fontsize=8)
    fig.suptitle(f"What each doubling of training data bought\n{caption or ''}".strip())
    _save(fig, out)
    plt.close(fig)


def plot_method_comparison(table: pd.DataFrame, path: Path) -> None:
    tuned = table[~table.run.isin(REFERENCE_RUNS)]
    memory = MEMORY_LABELS[tuned.train_peak_memory_kind.iloc[0]]
    panels = [("rouge-l", "ROUGE-L F1"), ("train_peak_memory_mb", memory),
              ("train_runtime_s", "training time (s, steps only)"), ("tokens_per_second", "inference tokens/s")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (col, label) in zip(axes, panels):
        sns.barplot(data=tuned, x="scale", y=col, hue="method", ax=ax)
        ax.set(xlabel="scale", ylabel="", title=label)
        ax.legend(fontsize=8)
    fig.suptitle(f"LoRA vs QLoRA at each scale\n{caption(tuned)}")
    _save(fig, path)
    plt.close(fig)


def plot_loss_curves(curves: pd.DataFrame, path: Path, produced_on: str = "") -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, series in zip(axes, ("train", "eval")):
        data = curves[curves.series == series]
        if not data.empty:
            sns.lineplot(data=data, x="samples_seen", y="loss", hue="run", marker="o" if series == "eval" else None, ax=ax)
        ax.set(title=f"{series} loss", xlabel="training samples seen", ylabel="loss")
    fig.suptitle(f"Training curves\n{produced_on}".strip())
    _save(fig, path)
    plt.close(fig)

