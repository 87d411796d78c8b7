"""medqa_scale.evaluate.win_rates: the rates of a judged comparison on tiny outcome tables, their
bootstrap and p-value, which comparisons are judged, and the win rate as a setup's metric.

Run: python -m pytest tests/test_win_rates.py -q
"""

from __future__ import annotations

import numpy as np
import pytest

from medqa_scale.evaluate.comparison import Setup, adjust, verdict
from medqa_scale.evaluate.metrics import bootstrap_counts
from medqa_scale.evaluate.win_rates import (WIN_RATE, add_win_rates, judge_comparisons, judged, judged_comparisons, row,
                                            seed_run, summary)


def counts(n: int, resamples: int = 2000, seed: int = 0) -> np.ndarray:
    return bootstrap_counts([str(i) for i in range(n)], resamples, seed)


def test_rates_count_a_tie_as_half_and_leave_unparseable_pairs_out():
    outcomes = [["win", "win", "tie", "loss", "unparseable"]]
    j = judged(outcomes, [[True, True, False, True, False]], counts(5))
    r = row(j, 0.95)
    assert r["win_share"] == pytest.approx(0.5) and r["tie_share"] == pytest.approx(0.25)
    assert r["loss_share"] == pytest.approx(0.25) and r["consistent_share"] == pytest.approx(0.75)
    assert r[WIN_RATE] == pytest.approx(62.5) and r[f"{WIN_RATE}_diff"] == pytest.approx(12.5)
    assert (r["judged_pairs"], r["unparseable"], r["agreeing_pairs"]) == (5, 1, 3)
    assert r[f"{WIN_RATE}_low"] <= r[WIN_RATE] <= r[f"{WIN_RATE}_high"]


def test_the_p_value_tests_the_win_rate_against_no_preference():
    clear = row(judged([["win"] * 36 + ["loss"] * 4], [[True] * 40], counts(40)), 0.95)
    even = row(judged([["win", "loss"] * 20], [[True] * 40], counts(40)), 0.95)
    assert clear[f"{WIN_RATE}_p"] < 0.001 and clear[f"{WIN_RATE}_low"] > 50
    assert even[f"{WIN_RATE}_p"] > 0.5 and even[f"{WIN_RATE}_low"] < 50 < even[f"{WIN_RATE}_high"]


def test_seeds_are_resampled_too_so_a_seed_that_disagrees_widens_the_interval():
    c = counts(40)
    same = judged([["win"] * 30 + ["loss"] * 10] * 2, [[True] * 40] * 2, c, np.random.default_rng(1))
    split = judged([["win"] * 40, ["win"] * 20 + ["loss"] * 20], [[True] * 40] * 2, c, np.random.default_rng(1))
    assert same.values[WIN_RATE].tolist() == [75.0, 75.0] and split.values[WIN_RATE].tolist() == [100.0, 50.0]
    width = lambda j: np.ptp(np.percentile(j.resamples[WIN_RATE], [2.5, 97.5]))  # noqa: E731
    assert width(split) > width(same)
    with pytest.raises(ValueError, match="pass rng"):
        judged([["win"], ["loss"]], [[True], [True]], counts(1))


def test_all_unparseable_rates_nothing_and_unknown_outcomes_are_refused():
    r = row(judged([["unparseable"] * 3], [[False] * 3], counts(3)), 0.95)
    assert r["unparseable"] == 3 and np.isnan(r[WIN_RATE]) and r[f"{WIN_RATE}_p"] == 1.0
    with pytest.raises(ValueError, match="unknown outcomes"):
        judged([["won"]], [[True]], counts(1))


def test_each_setup_is_judged_against_its_reference_and_the_next_smaller_scale():
    assert judged_comparisons(["lora", "qlora"], ["250", "1k"]) == [
        ("lora-250", "base"), ("lora-1k", "base"), ("qlora-250", "base-4bit"), ("qlora-1k", "base-4bit"),
        ("lora-1k", "lora-250"), ("qlora-1k", "qlora-250")]
    assert seed_run("lora-1k", 43) == "lora-1k-43" and seed_run("base-4bit", 43) == "base-4bit"


def lines_for(run: str, against: str, outcomes: list[str]) -> list[dict]:
    return [{"run": run, "against": against, "outcome": o, "consistent": o != "tie"} for o in outcomes]


def test_the_judge_stage_lines_become_each_comparisons_outcomes_seed_against_seed():
    lines = (lines_for("lora-1k-42", "base", ["win", "win"]) + lines_for("lora-1k-43", "base", ["loss", "tie"])
             + lines_for("lora-1k-42", "lora-250-42", ["tie", "tie"]) + lines_for("lora-1k-43", "lora-250-43", ["win", "loss"]))
    j = judge_comparisons(lines, [("lora-1k", "base"), ("lora-1k", "lora-250")], [42, 43], counts(2), 0)
    assert j[("lora-1k", "base")].values[WIN_RATE].tolist() == [100.0, 25.0]
    assert j[("lora-1k", "lora-250")].values[WIN_RATE].tolist() == [50.0, 50.0]
    with pytest.raises(ValueError, match="no judgments of lora-1k-44 against base"):
        judge_comparisons(lines, [("lora-1k", "base")], [42, 44], counts(2), 0)
    s = summary([row(v, 0.95) for v in j.values()])
    assert s == {"judged_pairs": 8, "unparseable": 0, "consistency": pytest.approx(5 / 8)}


def test_the_win_rate_against_the_reference_is_a_metric_the_verdict_can_use():
    c = counts(40, resamples=1000)
    setups = {name: Setup(name, {}, {}) for name in ("base", "lora-250", "lora-1k")}
    judgments = {("lora-250", "base"): judged([["win"] * 30 + ["loss"] * 10], [[True] * 40], c),
                 ("lora-1k", "base"): judged([["win"] * 32 + ["loss"] * 8], [[True] * 40], c),
                 ("lora-1k", "lora-250"): judged([["tie"] * 40], [[True] * 40], c)}
    add_win_rates(setups, judgments)
    assert setups["base"].values[WIN_RATE].tolist() == [50.0] and set(setups["base"].resamples[WIN_RATE]) == {50.0}
    assert setups["lora-1k"].values[WIN_RATE].tolist() == [80.0]
    rows = adjust([{"a": a, "b": b, **row(j, 0.95)} for (a, b), j in judgments.items()], [WIN_RATE], 0.05)
    assert [r[f"{WIN_RATE}_reading"] for r in rows] == ["lora-250 better", "lora-1k better", "no clear difference"]
    choice = verdict(setups, rows, {"lora-250": "base", "lora-1k": "base"}, {"lora-250": 1.0, "lora-1k": 4.0},
                     metric=WIN_RATE, alpha=0.05, margin=10.0)
    assert choice["best"] == "lora-1k" and choice["choice"] == "lora-250"  # 5 points short, within δ = 10
    add_win_rates(setups, {})  # the judge off: nothing changes
