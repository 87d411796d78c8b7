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

import logging
from pathlib import Path

from medqa_scale.cli import run
from medqa_scale.durable import atomic_path, remove_stale, write_json
from medqa_scale.params import REFERENCE_RUNS, load_params, run_name, scale_size
from medqa_scale.plots import caption, plot_loss_curves, plot_method_comparison, plot_scale_comparison
from medqa_scale.summary import loss_curves, results_table, summary

log = logging.getLogger(__name__)

PLOTS = Path("plots")
TABLE, SUMMARY = PLOTS / "results_summary.csv", Path("metrics/summary.json")
FIGURES = {name: PLOTS / f"{name}.png" for name in ("data_scale_comparison", "method_comparison", "loss_curves")}


def main() -> None:
    remove_stale(TABLE, SUMMARY, *FIGURES.values())
    p = load_params()
    runs = [(m, str(s)) for m in p["methods"] for s in p["split"]["scales"]]
    table = results_table(runs, Path("metrics/train"), Path("metrics/evaluate"))
    with atomic_path(TABLE) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    curves = loss_curves([(run_name(m, s), scale_size(s)) for m, s in runs], Path("dvclive"))
    plot_scale_comparison(table, FIGURES["data_scale_comparison"])
    plot_method_comparison(table, FIGURES["method_comparison"])
    plot_loss_curves(curves, FIGURES["loss_curves"], caption(table[~table.run.isin(REFERENCE_RUNS)]))
    write_json(SUMMARY, summary(table))
    log.info("summary of %d runs:\n%s", len(table), table[["run", "rouge-l", "bleu", "train_runtime_s"]].to_string(index=False))


if __name__ == "__main__":
    run(main)
