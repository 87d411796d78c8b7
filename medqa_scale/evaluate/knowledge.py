"""Exam accuracy per setup, as one more metric of the comparisons: each multiple-choice set's
accuracy (x100) with its two-level bootstrap over the set's items and the setup's seeds, so that
its paired differences, p-values and Holm's correction are those of the other metrics.

A set's metric is named `acc-<set>`; its items are resampled on their own (one group each), with
their own draws, not the test questions'. Pure functions of the per-item rows of stage benchmark.
"""

from __future__ import annotations

from medqa_scale.evaluate.comparison import Setup, check_same_questions, setups
from medqa_scale.evaluate.metrics import ACCURACY


def metric_of(set_name: str) -> str:
    return f"acc-{set_name}"


def set_setups(rows: dict[str, list[list[dict]]], set_name: str, resamples: int, seed: int) -> dict[str, Setup]:
    """Each setup's accuracy on `set_name`, from per-item rows ({"set", "id", "correct"}) of each of
    its seeds (`rows`: setup -> seeds -> rows, as summarize groups the answers). Raises ValueError
    when two runs were scored on other items."""
    per_set = {name: [[{"id": r["id"], ACCURACY: 100.0 * bool(r["correct"])} for r in seed if r["set"] == set_name]
                      for seed in seeds] for name, seeds in rows.items()}
    check_same_questions({f"{name} (seed {i + 1})": seed for name, seeds in per_set.items() for i, seed in enumerate(seeds)})
    first = next(iter(per_set.values()))[0]
    if not first:
        raise ValueError(f"no item of benchmark {set_name!r} was scored: rerun `dvc repro benchmark`")
    metric = metric_of(set_name)
    out = setups(per_set, [r["id"] for r in first], resamples, seed)
    return {name: Setup(name, {metric: s.values[ACCURACY]}, {metric: s.resamples[ACCURACY]}) for name, s in out.items()}


def add_sets(compared: dict[str, Setup], rows: dict[str, list[list[dict]]], set_names: list[str], resamples: int,
             seed: int) -> list[str]:
    """Add each set's accuracy to the setups being compared; returns the metrics added."""
    for i, set_name in enumerate(set_names):
        for name, s in set_setups(rows, set_name, resamples, seed + 1 + i).items():
            compared[name].values.update(s.values)
            compared[name].resamples.update(s.resamples)
    return [metric_of(s) for s in set_names]


def retention_flags(pairs: list[dict], reference_of: dict[str, str], retention_sets: list[str], max_drop: float) -> dict[str, list[str]]:
    """Per setup, the retention sets on which it lost more than `max_drop` points against its reference."""
    by_pair = {(r["a"], r["b"]): r for r in pairs}
    return {setup: [s for s in retention_sets if by_pair[(setup, ref)][f"{metric_of(s)}_diff"] < -max_drop]
            for setup, ref in reference_of.items()}
