"""The summary figures: what more data buys, LoRA against QLoRA, and the training curves.

PNG files, written atomically and without a timestamp, so an unchanged table gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")  # files only, no display; before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

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
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (col, label) in zip(axes, panels):
        sns.lineplot(data=tuned, x="n_train", y=col, hue="method", marker="o", ax=ax)
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

