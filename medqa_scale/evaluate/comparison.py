"""What the study can claim: each setup's metrics with intervals over test questions and seeds,
paired p-values between setups with Holm's correction over the report's family of comparisons,
and the verdict by the rule fixed in params (`report`), as pure functions of the per-answer scores.

A setup is a method at a scale (`lora-2k`), trained once per seed; a reference (`base`,
`base-4bit`) is a model without an adapter, with one "seed". All setups are resampled on the same
test questions (whole groups), so that a comparison between two of them is paired; each setup's
seeds are drawn with replacement on top (a two-level bootstrap), so intervals and p-values hold
the spread between training runs. With one seed they hold the test questions' spread only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medqa_scale.evaluate.metrics import LOWER_IS_BETTER, bootstrap_counts, interval, paired_p_value, point_estimates, resampled, scores_matrix


@dataclass
class Setup:
    name: str
    values: dict[str, np.ndarray]     # each metric per seed, (seeds,)
    resamples: dict[str, np.ndarray]  # each metric per bootstrap resample, (resamples,)


def direction(metric: str) -> int:
    """+1 where a higher value is better, -1 where lower is (NLL)."""
    return -1 if metric in LOWER_IS_BETTER else 1


def compared_metrics(primary: str) -> list[str]:
    """The metrics with p-values: the primary one, then ROUGE-L and BLEU."""
    return list(dict.fromkeys([primary, "rouge-l", "bleu"]))


def check_same_questions(scores: dict[str, list[dict]]) -> None:
    """Every run answered the same test questions in the same order, or pairing means nothing."""
    ids = {run: [row["id"] for row in rows] for run, rows in scores.items()}
    first, *rest = ids
    for run in rest:
        if ids[run] != ids[first]:
            raise ValueError(f"{run} was scored on other test questions than {first}: regenerate both with the same "
                             "data/split/test.jsonl and evaluate.max_samples")


def setups(scores: dict[str, list[list[dict]]], groups: list[str], resamples: int, seed: int) -> dict[str, Setup]:
    """Each setup's per-seed values and its bootstrap resamples: one matrix of drawn question groups
    for all setups; seeds drawn with replacement per setup (from `seed` and the setup's position)."""
    counts = bootstrap_counts(groups, resamples, seed)
    out = {}
    for i, (name, seeds) in enumerate(scores.items()):
        table = scores_matrix(seeds)
        out[name] = Setup(name, point_estimates(table), resampled(table, counts, np.random.default_rng([seed, i])))
    return out


def summary_row(setup: Setup, confidence: float) -> dict:
    """Mean over seeds of each metric, its interval, and the spread between seeds (sample standard
    deviation; 0 with one seed)."""
    row = {"seeds": len(next(iter(setup.values.values())))}
    for k, v in setup.values.items():
        bounds = interval(setup.resamples[k], confidence)
        row.update({k: float(v.mean()), f"{k}_low": bounds["low"], f"{k}_high": bounds["high"],
                    f"{k}_seed_sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0})
    return row


def compare(a: Setup, b: Setup, metrics: list[str], confidence: float) -> dict:
    """a minus b on each metric: the difference, its paired interval and two-sided paired p-value
    (unadjusted; `adjust` adds Holm's and the reading)."""
    row = {"a": a.name, "b": b.name}
    for k in metrics:
        diff = float(a.values[k].mean() - b.values[k].mean())
        deltas = a.resamples[k] - b.resamples[k]
        spread = interval(deltas, confidence)
        row.update({f"{k}_diff": diff, f"{k}_p": paired_p_value(diff, deltas),
                    f"{k}_diff_low": spread["low"], f"{k}_diff_high": spread["high"]})
    return row


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in input order: the i-th smallest times (m - i + 1),
    made non-decreasing, capped at 1. Controls the family-wise error rate at any dependence."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(np.asarray(p_values)[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def adjust(rows: list[dict], metrics: list[str], alpha: float) -> list[dict]:
    """The comparisons with each p-value Holm-adjusted over the whole family (every row x every
    metric the row holds: the judge's win rate only in the comparisons it judged) and each reading
    following the adjusted p-value: `<a> better` or `<b> better` when it is below `alpha` (better by
    the metric's direction), else `no clear difference`."""
    family = [(i, k) for i, row in enumerate(rows) for k in metrics if f"{k}_p" in row]
    adjusted = dict(zip(family, holm([rows[i][f"{k}_p"] for i, k in family])))
    out = []
    for i, row in enumerate(rows):
        row = dict(row)
        for k in metrics:
            if (i, k) not in adjusted:
                continue
            p = adjusted[(i, k)]
            gain = direction(k) * row[f"{k}_diff"]
            row[f"{k}_p_holm"] = p
            row[f"{k}_reading"] = ("no clear difference" if p >= alpha or not gain > 0 and not gain < 0 else
                                   f"{row['a']} better" if gain > 0 else f"{row['b']} better")
        out.append(row)
    return out


def comparisons(methods: list[str], scales: list[str], references: dict[str, str]) -> list[tuple[str, str]]:
    """The pairs the report compares: each setup against its reference (`references[method]`),
    adjacent scales of one method (larger first), LoRA against QLoRA at each scale."""
    pairs = [(f"{m}-{s}", references[m]) for m in methods for s in scales]
    pairs += [(f"{m}-{big}", f"{m}-{small}") for m in methods for small, big in zip(scales, scales[1:])]
    if "lora" in methods and "qlora" in methods:
        pairs += [(f"lora-{s}", f"qlora-{s}") for s in scales]
    return pairs


def verdict(compared: dict[str, Setup], adjusted: list[dict], reference_of: dict[str, str], cost: dict[str, float], *,
            metric: str, alpha: float, margin: float) -> dict:
    """The verdict by the rule fixed in params, on `metric`:
    - a setup qualifies when it beats its own reference (`reference_of[setup]`) on the paired test,
      Holm-adjusted p below `alpha` (`adjusted`, from `adjust`);
    - the best is the qualifying setup with the best `metric`;
    - the most cost-effective is the cheapest qualifying setup (lowest `cost`, ties to the better
      metric) whose one-sided paired upper bound, at 1 - alpha, of how much worse it is than the
      best is within `margin`.
    With nothing qualifying there is no best and no choice."""
    sign = direction(metric)
    by_pair = {(r["a"], r["b"]): r for r in adjusted}
    mean = {name: sign * float(s.values[metric].mean()) for name, s in compared.items()}
    qualifying = [s for s, ref in reference_of.items()
                  if by_pair[(s, ref)][f"{metric}_p_holm"] < alpha and by_pair[(s, ref)][f"{metric}_diff"] * sign > 0]
    rule = (f"a setup qualifies when it beats its own reference (LoRA: base, QLoRA: base-4bit) on {metric} by a paired "
            f"bootstrap test, Holm-adjusted p < {alpha:g}; the best is the qualifying setup with the best {metric}; the most "
            f"cost-effective is the cheapest qualifying setup (training time) whose one-sided {1 - alpha:.0%} paired bound "
            f"of its shortfall from the best is within δ = {margin:g}")
    if not qualifying:
        return {"metric": metric, "choice": None, "best": None, "qualifying": [], "shortfall_bound": {}, "rule": rule}
    best = max(qualifying, key=lambda s: mean[s])
    bound = {s: float(np.percentile(sign * (compared[best].resamples[metric] - compared[s].resamples[metric]), 100 * (1 - alpha)))
             for s in qualifying}
    within = [s for s in qualifying if bound[s] <= margin]
    choice = min(within, key=lambda s: (cost[s], -mean[s]))
    return {"metric": metric, "choice": choice, "best": best, "qualifying": sorted(qualifying), "shortfall_bound": bound,
            "within_margin": sorted(within), "rule": rule}
