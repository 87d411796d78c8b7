"""Win, tie and loss rates of a judged comparison (evaluate/judge.py), with the same statistics as
every other comparison the report makes: percentile intervals from the one bootstrap of question
groups (and seeds) and a two-sided paired p-value, as pure functions of the per-pair outcomes.

A comparison `a` against `b` holds, for each seed, one outcome per test question: "win" (a's
answer preferred in both orders), "loss", "tie" (the orders disagree, or both say tie) or
"unparseable" (a reply that could not be read: left out of every rate and counted). The win rate
counts a tie as half a win, so 50 means no preference; the p-value tests it against 50.
Seed i of `a` is judged against seed i of `b` (a reference has one answer set for every seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medqa_scale.core.params import BASE_4BIT_RUN, BASE_RUN, setup_name
from medqa_scale.evaluate.metrics import interval, paired_p_value, seed_weights

REFERENCE_OF = {"lora": BASE_RUN, "qlora": BASE_4BIT_RUN}  # what each method's adapter is trained on
WIN_RATE = "win-rate"  # the metric's name in the tables, comparisons and report.primary_metric
OUTCOMES = ("win", "tie", "loss", "unparseable")
SHARES = ("win", "tie", "loss", "consistent")  # each a share of the parseable pairs


def judged_comparisons(methods: list[str], scales: list[str]) -> list[tuple[str, str]]:
    """(setup, against) for each judged comparison: every setup against its reference, and every
    scale against the next smaller one of its method."""
    pairs = [(setup_name(m, s), REFERENCE_OF[m]) for m in methods for s in scales]
    return pairs + [(setup_name(m, big), setup_name(m, small)) for m in methods for small, big in zip(scales, scales[1:])]


def seed_run(setup: str, seed) -> str:
    """The run of `setup` trained with `seed`; a reference has one run for every seed."""
    return setup if setup in REFERENCE_OF.values() else f"{setup}-{seed}"


@dataclass
class Judged:
    values: dict[str, np.ndarray]     # per seed, (seeds,): WIN_RATE (0-100) and each share (0-1)
    resamples: dict[str, np.ndarray]  # per bootstrap resample, (resamples,)
    pairs: int                        # judged pairs (seeds x questions)
    unparseable: int                  # of them, with a reply that could not be read
    agreeing: int                     # parseable pairs whose two orders name the same answer (or both a tie)


def judged(outcomes: list[list[str]], consistent: list[list[bool]], counts: np.ndarray,
           rng: np.random.Generator | None = None) -> Judged:
    """The rates of one comparison from its outcomes and order agreement, (seeds, questions) as
    nested lists in test order; resampled on `counts` (metrics.bootstrap_counts, shared with every
    other metric), the seeds drawn with replacement from `rng` as metrics.resampled draws them."""
    o = np.asarray(outcomes, dtype=object)
    bad = [v for v in set(o.ravel()) if v not in OUTCOMES]
    if bad:
        raise ValueError(f"unknown outcomes {sorted(map(str, bad))}: each is one of {OUTCOMES}")
    valid = (o != "unparseable").astype(float)
    points = {"win": (o == "win") * 1.0, "tie": (o == "tie") * 1.0, "loss": (o == "loss") * 1.0,
              "consistent": np.asarray(consistent, dtype=float) * valid}
    points[WIN_RATE] = 100 * (points["win"] + points["tie"] / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = {k: v.sum(axis=1) / valid.sum(axis=1) for k, v in points.items()}
        drawn_valid = counts @ valid.T  # (resamples, seeds)
        per_seed = {k: (counts @ v.T) / drawn_valid for k, v in points.items()}
    picks = seed_weights(counts.shape[0], o.shape[0], rng)
    with np.errstate(invalid="ignore", divide="ignore"):  # a seed whose drawn pairs are all unparseable: left out
        resamples = {k: (np.nan_to_num(v) * picks).sum(axis=1) / (picks * ~np.isnan(v)).sum(axis=1) for k, v in per_seed.items()}
    return Judged(values, resamples, int(o.size), int(o.size - valid.sum()), int(points["consistent"].sum()))


def judge_comparisons(lines: list[dict], comparisons: list[tuple[str, str]], seeds: list, counts: np.ndarray,
                      seed: int) -> dict[tuple[str, str], Judged]:
    """`judged` of each comparison (setup, against) from the judge stage's lines ({"run", "against",
    "outcome", "consistent"}, in test order), seed against seed, on the shared bootstrap `counts`;
    each comparison's seeds drawn from its own generator ([seed, its position])."""
    by_pair: dict[tuple[str, str], list[dict]] = {}
    for line in lines:
        by_pair.setdefault((line["run"], line["against"]), []).append(line)
    out = {}
    for k, (a, c) in enumerate(comparisons):
        missing = [s for s in seeds if (seed_run(a, s), seed_run(c, s)) not in by_pair]
        if missing:
            raise ValueError(f"no judgments of {seed_run(a, missing[0])} against {seed_run(c, missing[0])}: rerun the judge "
                             "stage (dvc repro judge)")
        mine = [by_pair[(seed_run(a, s), seed_run(c, s))] for s in seeds]
        out[(a, c)] = judged([[x["outcome"] for x in m] for m in mine], [[x["consistent"] for x in m] for m in mine],
                             counts, np.random.default_rng([seed, k]))
    return out


def row(j: Judged, confidence: float) -> dict:
    """A comparison's judged columns: the win rate (mean over seeds) with its interval, its
    difference from 50 with the paired interval and the unadjusted two-sided p-value (the keys
    comparison.adjust reads), each share with its interval, the pairs and the unparseable ones."""
    out = {"judged_pairs": j.pairs, "unparseable": j.unparseable, "agreeing_pairs": j.agreeing}
    if j.pairs == j.unparseable:  # nothing to rate
        return {**out, WIN_RATE: float("nan"), f"{WIN_RATE}_diff": float("nan"), f"{WIN_RATE}_p": 1.0}
    for k in (WIN_RATE, *SHARES):
        name = k if k == WIN_RATE else f"{k}_share"
        value = float(np.nanmean(j.values[k]))
        draws = j.resamples[k][~np.isnan(j.resamples[k])]
        out.update({name: value, **{f"{name}_{end}": v for end, v in interval(draws, confidence).items()}})
    diff = out[WIN_RATE] - 50
    deltas = j.resamples[WIN_RATE][~np.isnan(j.resamples[WIN_RATE])] - 50
    spread = interval(deltas, confidence)
    out.update({f"{WIN_RATE}_diff": diff, f"{WIN_RATE}_p": paired_p_value(diff, deltas),
                f"{WIN_RATE}_diff_low": spread["low"], f"{WIN_RATE}_diff_high": spread["high"]})
    return out


def summary(rows: list[dict]) -> dict:
    """Across comparisons: judged pairs, unparseable ones and the share of parseable pairs whose
    two orders agree (the judge's consistency)."""
    pairs, unparseable, agreeing = (sum(r[k] for r in rows) for k in ("judged_pairs", "unparseable", "agreeing_pairs"))
    return {"judged_pairs": pairs, "unparseable": unparseable,
            "consistency": agreeing / (pairs - unparseable) if pairs > unparseable else None}


def add_win_rates(setups: dict, judgments: dict[tuple[str, str], Judged]) -> None:
    """Give each setup (comparison.Setup) the metric WIN_RATE: its win rate against its own
    reference, per seed and per resample; a reference's is 50 (no preference against itself).
    Then the verdict's rule and the summary table treat it as any other metric. No judgments: nothing added."""
    if not judgments:
        return
    resamples = len(next(iter(judgments.values())).resamples[WIN_RATE])
    for (a, against), j in judgments.items():
        if against in REFERENCE_OF.values():
            setups[a].values[WIN_RATE], setups[a].resamples[WIN_RATE] = j.values[WIN_RATE], j.resamples[WIN_RATE]
    for name in REFERENCE_OF.values():
        if name in setups:
            setups[name].values[WIN_RATE], setups[name].resamples[WIN_RATE] = np.array([50.0]), np.full(resamples, 50.0)
