"""Compare experiments: one table and one figure across everything `dvc exp show` lists, so that a
sweep (learning rates, seeds, KL on and off...) ends in one place.

Run from the repository root, after the experiments ran here or were pulled (`dvc exp pull`):
    python -m medqa_scale.apps.sweep                  # the workspace, HEAD and HEAD's experiments
    python -m medqa_scale.apps.sweep --all-commits    # every commit's experiments
Reads:  `dvc exp show --json`: each experiment's params.yaml, metrics/evaluate/<run>.json and
        metrics/benchmark/<run>.json
Writes: outputs/sweep.csv, one row per experiment and run: the experiment, the params that differ
        between experiments, the run (method, scale, seed), ROUGE-L and BLEU with their intervals, and
        each exam set's accuracy (acc-<set>: domain knowledge gained, retention kept)
        outputs/sweep.png, ROUGE-L against training samples per method, one panel per experiment
        (outputs/ is git-ignored: a sweep is compared, not versioned)
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.core.durable import atomic_path
from medqa_scale.core.params import REFERENCE_RUNS, parse_run, scale_size

log = logging.getLogger(__name__)

OUT = Path("outputs")
EVALUATE = "metrics/evaluate/"
BENCHMARK = "metrics/benchmark/"  # exam accuracy per set: domain gain and retention, with and without KL


def experiments(shown: list[dict]) -> list[tuple[str, dict]]:
    """(name, data) of each baseline and experiment in `dvc exp show --json` output that has data."""
    found = []
    for baseline in shown:
        entries = [(baseline.get("name") or _short(baseline["rev"]), baseline.get("data"))]
        for exp in baseline.get("experiments") or []:
            entries += [(rev.get("name") or exp.get("name") or _short(rev["rev"]), rev.get("data")) for rev in exp.get("revs", [])]
        found += [(name, data) for name, data in entries if data and data.get("metrics")]
    return found


def _short(rev: str) -> str:
    """A commit as git abbreviates it; `workspace` as it is."""
    return rev[:7] if len(rev) == 40 else rev


def flatten(params: dict, prefix: str = "") -> dict[str, str]:
    """Dotted keys to values (lists and mappings as JSON), for comparing params across experiments."""
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value
    return flat


def sweep_table(shown: list[dict]) -> pd.DataFrame:
    """One row per experiment and evaluated run, with the params that differ between experiments."""
    rows, params = [], {}
    for name, data in experiments(shown):
        params[name] = flatten(((data.get("params") or {}).get("params.yaml") or {}).get("data") or {})
        exams = {Path(path).stem: (entry or {}).get("data") or {} for path, entry in data["metrics"].items()
                 if path.startswith(BENCHMARK)}
        for path, entry in data["metrics"].items():
            m = (entry or {}).get("data")
            if not path.startswith(EVALUATE) or not m or "rouge-l" not in m:
                continue
            run_name = Path(path).stem
            method, scale, seed = (run_name, "0", None) if run_name in REFERENCE_RUNS else parse_run(run_name)
            rows.append({"experiment": name, "run": run_name, "method": method, "scale": scale, "seed": seed,
                         "n_train": 0 if seed is None else scale_size(scale), **{k: m[k] for k in ("rouge-l", "bleu")},
                         **{f"{k}_{end}": m["interval"][k][end] for k in ("rouge-l", "bleu") for end in ("low", "high")},
                         **{f"acc-{s}": v["accuracy"] for s, v in (exams.get(run_name, {}).get("sets") or {}).items()}})
    if not rows:
        raise PipelineError("no experiment has evaluation metrics yet: run `dvc exp run` (or `dvc exp pull`) first")
    keys = sorted({k for p in params.values() for k in p})
    varied = [k for k in keys if len({json.dumps(p.get(k), default=str) for p in params.values()}) > 1]
    table = pd.DataFrame(rows)
    for key in varied:
        table.insert(1 + varied.index(key), key, table.experiment.map(lambda e, k=key: params[e].get(k)))
    return table


def plot_sweep(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    tuned = table[~table.run.isin(REFERENCE_RUNS)]
    names = list(dict.fromkeys(tuned.experiment))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        sns.lineplot(data=tuned[tuned.experiment == name], x="n_train", y="rouge-l", hue="method", marker="o",
                     errorbar=None, ax=ax)
        base = table[(table.experiment == name) & (table.run == "base")]
        if not base.empty:
            ax.axhline(base["rouge-l"].iloc[0], color="grey", linestyle="--", label="base model")
        ax.set(xscale="log", xlabel="training samples", ylabel="ROUGE-L", title=name)
        ax.legend(fontsize=8)
    fig.suptitle("ROUGE-L across experiments")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m medqa_scale.apps.sweep", description=__doc__.split("\n")[0])
    ap.add_argument("--all-commits", action="store_true", help="every commit's experiments, not only HEAD's")
    args = ap.parse_args(argv)
    cmd = [sys.executable, "-m", "dvc", "exp", "show", "--json", *(["--all-commits"] if args.all_commits else [])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PipelineError(f"`dvc exp show --json` failed: {proc.stderr.strip()[-500:]}")
    table = sweep_table(json.loads(proc.stdout))
    OUT.mkdir(exist_ok=True)
    with atomic_path(OUT / "sweep.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    plot_sweep(table, OUT / "sweep.png")
    log.info("%d experiments, %d rows: %s and %s", table.experiment.nunique(), len(table), OUT / "sweep.csv",
             OUT / "sweep.png")


if __name__ == "__main__":
    run(main)
