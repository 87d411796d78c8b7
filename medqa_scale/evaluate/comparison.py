"""What the study can claim: each setup's metrics with intervals over test questions and seeds,
paired p-values between setups, and the cost-effectiveness verdict, as pure functions of the
per-sample scores.

A setup is a method at a scale (`lora-2k`), trained once per seed; a reference (`base`,
`base-4bit`) is a model without an adapter, with one "seed". All setups are resampled on the same
test questions, so that a comparison between two of them is paired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medqa_scale.evaluate.metrics import METRICS, bootstrap_indices, interval, paired_p_value, point_estimates, resampled, scores_matrix

COMPARED = ("rouge-l", "bleu")  # the metrics with p-values


@dataclass
class Setup:
    name: str
    values: dict[str, np.ndarray]     # each metric per seed, (seeds,)
    resamples: dict[str, np.ndarray]  # each metric per bootstrap resample, (resamples,)


def check_same_questions(scores: dict[str, list[dict]]) -> None:
    """Every run answered the same test questions in the same order, or pairing means nothing."""
    ids = {run: [row["id"] for row in rows] for run, rows in scores.items()}
    first, *rest = ids
    for run in rest:
        if ids[run] != ids[first]:
            raise ValueError(f"{run} was scored on other test questions than {first}: regenerate both with the same "
                             "data/split/test.jsonl and evaluate.max_samples")


def setups(scores: dict[str, list[list[dict]]], resamples: int, seed: int) -> dict[str, Setup]:
    """Each setup's per-seed values and its bootstrap resamples: one matrix of question indices for
    all setups; seeds drawn with replacement per setup (from `seed` and the setup's position)."""
    n = len(next(iter(scores.values()))[0])
    questions = bootstrap_indices(n, resamples, seed)
    out = {}
    for i, (name, seeds) in enumerate(scores.items()):
        table = scores_matrix(seeds)
        out[name] = Setup(name, point_estimates(table), resampled(table, questions, np.random.default_rng([seed, i])))
    return out


def summary_row(setup: Setup, confidence: float) -> dict:
    """Mean over seeds of each metric, its interval, and the spread between seeds (sample standard
    deviation; 0 with one seed)."""
    row = {"seeds": len(setup.values["rouge-l"])}
    for k in METRICS:
        v = setup.values[k]
        bounds = interval(setup.resamples[k], confidence)
        row.update({k: float(v.mean()), f"{k}_low": bounds["low"], f"{k}_high": bounds["high"],
                    f"{k}_seed_sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0})
    return row


def compare(a: Setup, b: Setup, confidence: float) -> dict:
    """a minus b on each of COMPARED: the difference, its paired p-value and interval, and what may
    be said: `a better`, `b better`, or `no clear difference` when the two setups' intervals overlap."""
    row = {"a": a.name, "b": b.name}
    for k in COMPARED:
        diff = float(a.values[k].mean() - b.values[k].mean())
        deltas = a.resamples[k] - b.resamples[k]
        ia, ib, spread = (interval(v, confidence) for v in (a.resamples[k], b.resamples[k], deltas))
        overlap = ia["low"] <= ib["high"] and ib["low"] <= ia["high"]
        row.update({f"{k}_diff": diff, f"{k}_p": paired_p_value(diff, deltas),
                    f"{k}_diff_low": spread["low"], f"{k}_diff_high": spread["high"],
                    f"{k}_reading": "no clear difference" if overlap else (f"{a.name} better" if diff > 0 else f"{b.name} better")})
    return row


def comparisons(methods: list[str], scales: list[str], references: dict[str, str]) -> list[tuple[str, str]]:
    """The pairs the report compares: each setup against its reference (`references[method]`),
    adjacent scales of one method (larger first), LoRA against QLoRA at each scale."""
    pairs = [(f"{m}-{s}", references[m]) for m in methods for s in scales]
    pairs += [(f"{m}-{big}", f"{m}-{small}") for m in methods for small, big in zip(scales, scales[1:])]
    if "lora" in methods and "qlora" in methods:
        pairs += [(f"lora-{s}", f"qlora-{s}") for s in scales]
    return pairs


def overlaps(row: dict, best: dict, metric: str = "rouge-l") -> bool:
    return row[f"{metric}_low"] <= best[f"{metric}_high"] and best[f"{metric}_low"] <= row[f"{metric}_high"]


def verdict(rows: list[dict], cost: str = "train_runtime_s", metric: str = "rouge-l") -> dict:
    """The most cost-effective setup by the stated rule: of the setups whose `metric` interval
    overlaps the best setup's, the one with the lowest `cost` (training time); ties go to the
    higher score. Returns the choice, the best setup, and the setups it cannot be told apart from."""
    best = max(rows, key=lambda r: r[metric])
    tied = [r for r in rows if overlaps(r, best, metric)]
    choice = min(tied, key=lambda r: (r[cost], -r[metric]))
    return {"choice": choice["run"], "best": best["run"], "indistinguishable_from_best": sorted(r["run"] for r in tied),
            "rule": f"the cheapest setup (lowest {cost}) whose {metric} interval overlaps the best setup's"}
