"""The study's results as one table, the training curves as one long table (and the wide one
`dvc plots` draws), and the summary that `dvc metrics diff` compares: pure functions of the
per-run metrics files."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from medqa_scale.core.durable import read_json
from medqa_scale.core.params import BASE_RUN, REFERENCE_RUNS, run_name, scale_size, setup_name

QUALITY = ["rouge-1", "rouge-2", "rouge-l", "bleu", "lf-rouge-1", "lf-rouge-2", "lf-rouge-l", "char-bleu-4"]
HEALTH = ["ran_to_max_new_tokens", "repeated_4grams", "length_ratio", "broken_characters"]
TRAIN_COSTS = {"train_runtime_s": "train_runtime_s", "train_tokens_per_second": "tokens_per_second",
               "train_peak_memory_mb": "peak_memory_mb", "best_eval_loss": "best_eval_loss"}
EVAL_COSTS = {"samples_per_second": "samples_per_second", "tokens_per_second": "tokens_per_second",
              "eval_peak_memory_mb": "peak_memory_mb"}


def runs_table(runs: list[tuple[str, str, int]], metrics_dir: Path) -> pd.DataFrame:
    """One row per model evaluated: the base model and the 4-bit base first, then every training
    run (method, scale, seed), from metrics/{likelihood,evaluate,generate,train}/<run>.json."""
    rows = [{"run": ref, "setup": ref, "method": ref, "scale": "0", "seed": None, "n_train": 0,
             **_eval_columns(metrics_dir, ref)} for ref in REFERENCE_RUNS]
    for method, scale, seed in runs:
        run = run_name(method, scale, seed)
        t = read_json(metrics_dir / "train" / f"{run}.json")
        rows.append({"run": run, "setup": setup_name(method, scale), "method": method, "scale": scale, "seed": seed,
                     "n_train": scale_size(scale), **_eval_columns(metrics_dir, run),
                     **{col: t[key] for col, key in TRAIN_COSTS.items()},
                     "train_peak_memory_kind": t["peak_memory_kind"], "trainable_params": t["trainable_params"],
                     "produced_on": t["produced_on"]})
    return pd.DataFrame(rows)


def _eval_columns(metrics_dir: Path, run: str) -> dict:
    e, g = read_json(metrics_dir / "evaluate" / f"{run}.json"), read_json(metrics_dir / "generate" / f"{run}.json")
    nll = read_json(metrics_dir / "likelihood" / f"{run}.json")
    bounds = {f"{k}_{end}": e["interval"][k][end] for k in QUALITY for end in ("low", "high")}
    return {"nll": nll["nll"], "nll_low": nll["interval"]["nll"]["low"], "nll_high": nll["interval"]["nll"]["high"],
            "perplexity": nll["perplexity"], **{k: e[k] for k in QUALITY}, **bounds,
            **{col: g[key] for col, key in EVAL_COSTS.items()}, **{k: e["health"][k] for k in HEALTH}, "n_test": e["n_test"],
            **_benchmark_columns(metrics_dir, run)}


def _benchmark_columns(metrics_dir: Path, run: str) -> dict:
    """Each multiple-choice set's accuracy and interval (`acc-<set>`), where stage benchmark scored the run."""
    path = metrics_dir / "benchmark" / f"{run}.json"
    if not path.exists():
        return {}
    sets = read_json(path)["sets"]
    return {f"acc-{name}{end}": (s["accuracy"] if not end else s["interval"]["accuracy"][end[1:]])
            for name, s in sets.items() for end in ("", "_low", "_high")}


def setups_table(runs: pd.DataFrame, quality: dict[str, dict]) -> pd.DataFrame:
    """One row per setup (a method at a scale; the references as they are): `quality[setup]` (the
    mean over seeds of each metric, its interval over questions and seeds, the spread between
    seeds), the perplexity of the mean NLL, and the mean cost and generation health over its seeds."""
    rows = []
    for setup, group in runs.groupby("setup", sort=False):
        first = group.iloc[0]
        costs = {c: float(group[c].mean()) for c in [*TRAIN_COSTS, *EVAL_COSTS, *HEALTH] if c in group and group[c].notna().all()}
        extra = {c: first[c] for c in ("train_peak_memory_kind", "trainable_params", "produced_on") if c in group}
        q = quality[setup]
        rows.append({"run": setup, "method": first.method, "scale": first.scale, "n_train": first.n_train,
                     **q, **({"perplexity": math.exp(q["nll"])} if "nll" in q else {}), **costs, **extra})
    return pd.DataFrame(rows)


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


def curves_table(curves: pd.DataFrame) -> pd.DataFrame:
    """The curves as `dvc plots` draws them: a row per run and point on the samples-seen axis, a
    column per series (train_loss, eval_loss), empty where that series has no point there."""
    wide = (curves.assign(samples_seen=curves.samples_seen.round(), column=curves.series + "_loss")
            .pivot(index=["run", "samples_seen"], columns="column", values="loss")
            .reindex(columns=["train_loss", "eval_loss"]).reset_index())
    wide.columns.name = None
    return wide


def summary(setups: pd.DataFrame, choice: dict, rouge_choice: dict, knowledge: dict | None = None) -> dict:
    """What `dvc metrics diff` and `dvc exp show` compare: the primary metric, the best setup by
    the report's rule with its primary metric, interval, ROUGE-L, BLEU and cost (training seconds,
    training peak memory in MB), the most cost-effective setup, the base model, how many setups
    qualified, the setup a ROUGE-L verdict would choose, and (`knowledge`, from the benchmarks) the
    chosen setup's exam accuracy changes and whether it keeps general ability. In this order, and short: the keys
    are the experiments table's columns (README, `dvc exp show --keep ...`). Without a qualifying
    setup the best and the choice are null."""
    metric = choice["metric"]
    key = metric.replace("-", "_")
    base = setups[setups.run == BASE_RUN].iloc[0]
    by_run = setups.set_index("run")
    best = by_run.loc[choice["best"]] if choice["best"] else None
    pick = by_run.loc[choice["choice"]] if choice["choice"] else None
    value = lambda row, col: None if row is None else float(row[col])  # noqa: E731
    return {"primary_metric": metric, "best_run": choice["best"], f"best_{key}": value(best, metric),
            f"best_{key}_low": value(best, f"{metric}_low"), f"best_{key}_high": value(best, f"{metric}_high"),
            "best_rouge_l": value(best, "rouge-l"), "best_bleu": value(best, "bleu"),
            "best_train_s": value(best, "train_runtime_s"), "best_train_mb": value(best, "train_peak_memory_mb"),
            "most_cost_effective": choice["choice"], f"most_cost_effective_{key}": value(pick, metric),
            "most_cost_effective_train_runtime_s": value(pick, "train_runtime_s"),
            f"base_{key}": float(base[metric]), "base_rouge_l": float(base["rouge-l"]), "base_bleu": float(base["bleu"]),
            "qualifying_setups": len(choice["qualifying"]), "setups": int((~setups.run.isin(REFERENCE_RUNS)).sum()),
            "rouge_l_verdict": rouge_choice["choice"], "rouge_l_verdict_agrees": rouge_choice["choice"] == choice["choice"],
            **(knowledge or {})}
