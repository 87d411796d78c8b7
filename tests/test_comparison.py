"""medqa_scale.evaluate.comparison: setups over seeds and questions, paired comparisons with Holm's
correction, and the verdict. Most tests build per-answer scores by hand, so that what each setup
is better or worse at is known before the bootstrap runs.

Run: python -m pytest -q tests/test_comparison.py
"""

from __future__ import annotations

import numpy as np
import pytest

from medqa_scale.evaluate.comparison import (adjust, check_same_questions, compare, compared_metrics, comparisons, holm,
                                             setups, summary_row, verdict)
from medqa_scale.evaluate.metrics import per_sample_scores

REFS = ["头痛应多休息睡觉", "发热要去医院", "咳嗽要多喝温水", "腹泻需要补液盐", "失眠应规律作息", "胃痛要清淡饮食"] * 5
POOR = ["头痛要多休息", "发热请就医吃药", "咳嗽多喝水", "腹泻要补液", "失眠少喝咖啡", "胃痛少吃辣"] * 5
REF_GROUPS = [f"g{i % 6}" for i in range(len(REFS))]  # the five copies of a question form one group

N = 60  # constructed questions, one group each
GROUPS = [f"q{i}" for i in range(N)]
SPREAD = np.random.default_rng(0).uniform(10, 90, size=N)  # questions differ a lot from each other
BLEU_STATS = [6, 8, 5, 3, 1, 0, 6, 5, 4, 3]  # one sentence's sacrebleu statistics, the same in every setup


def scored(preds):
    return [{"id": i, "group": g, **s} for i, (g, s) in enumerate(zip(REF_GROUPS, per_sample_scores(preds, REFS)))]


def constructed(rouge_l, nll=None):
    """Per-answer rows as the evaluate and generate stages write them, with the given ROUGE-L (the
    other mean metrics follow it) and per-token NLL (5 answer tokens each)."""
    nll = np.full(len(rouge_l), 2.0) if nll is None else nll
    return [{"id": f"a{i}", "group": GROUPS[i], "rouge-l": float(r), "rouge-1": float(r) + 5, "rouge-2": float(r) - 5,
             "lf-rouge-1": float(r) + 8, "lf-rouge-2": float(r) - 2, "lf-rouge-l": float(r) + 3, "char-bleu-4": float(r) / 2,
             "bleu_stats": BLEU_STATS, "nll_stats": [5 * float(n), 5]}
            for i, (r, n) in enumerate(zip(rouge_l, nll))]


def noise(seed, sd):
    return np.random.default_rng(seed).normal(0, sd, size=N)


def shifted(by, seed, sd=0.2):
    """SPREAD + `by` + noise of mean exactly 0: a setup whose mean is SPREAD's plus `by`."""
    e = noise(seed, sd)
    return SPREAD + by + e - e.mean()


def judged(scores, metrics, pairs, alpha=0.05, resamples=1000):
    s = setups(scores, GROUPS, resamples=resamples, seed=0)
    return s, adjust([compare(s[a], s[b], metrics, 0.95) for a, b in pairs], metrics, alpha)


# --- setups and their summary rows ------------------------------------------------------------

def test_a_setup_with_one_seed_reports_its_scores_with_an_interval_and_no_spread():
    [setup] = setups({"lora-1k": [scored(POOR)]}, REF_GROUPS, resamples=300, seed=0).values()
    row = summary_row(setup, 0.95)
    assert row["seeds"] == 1 and row["rouge-l_seed_sd"] == 0.0
    assert row["rouge-l_low"] < row["rouge-l"] < row["rouge-l_high"]


def test_several_seeds_report_their_mean_and_spread():
    [setup] = setups({"lora-1k": [scored(POOR), scored(REFS)]}, REF_GROUPS, resamples=300, seed=0).values()
    row = summary_row(setup, 0.95)
    poor = summary_row(setups({"x": [scored(POOR)]}, REF_GROUPS, resamples=300, seed=0)["x"], 0.95)
    assert row["seeds"] == 2
    assert row["rouge-l"] == pytest.approx((poor["rouge-l"] + 100) / 2)
    assert row["rouge-l_seed_sd"] == pytest.approx(np.std([poor["rouge-l"], 100], ddof=1))
    assert row["rouge-l_high"] == pytest.approx(100)


def test_intervals_widen_with_the_spread_between_seeds():
    # Both setups score SPREAD per question on average over their two seeds; one's seeds agree,
    # the other's sit 8 points either side.
    s = setups({"agree": [constructed(SPREAD), constructed(SPREAD)],
                "spread": [constructed(SPREAD + 8, nll=np.full(N, 2.5)), constructed(SPREAD - 8, nll=np.full(N, 1.5))]},
               GROUPS, resamples=1000, seed=0)
    agree, spread = summary_row(s["agree"], 0.95), summary_row(s["spread"], 0.95)
    assert agree["rouge-l"] == pytest.approx(spread["rouge-l"])
    assert agree["rouge-l_seed_sd"] == 0.0 and spread["rouge-l_seed_sd"] == pytest.approx(16 / np.sqrt(2))
    for k in ("rouge-l", "nll"):
        assert spread[f"{k}_high"] - spread[f"{k}_low"] > 1.5 * (agree[f"{k}_high"] - agree[f"{k}_low"]), k
    assert agree["nll_low"] == agree["nll_high"] == pytest.approx(2.0)  # every answer 2.0 per token


def test_constructed_rows_give_every_metric():
    [setup] = setups({"x": [constructed(SPREAD)]}, GROUPS, resamples=50, seed=0).values()
    assert set(setup.values) == {"rouge-1", "rouge-2", "rouge-l", "bleu", "lf-rouge-1", "lf-rouge-2", "lf-rouge-l",
                                 "char-bleu-4", "nll"}
    assert setup.values["rouge-l"] == pytest.approx([SPREAD.mean()])


# --- paired comparisons -----------------------------------------------------------------------

def test_a_clear_difference_is_called_and_no_difference_is_not():
    s = setups({"good": [scored(REFS)], "poor": [scored(POOR)], "poor-too": [scored(POOR)]}, REF_GROUPS,
               resamples=500, seed=1)
    metrics = compared_metrics("rouge-l")
    assert metrics == ["rouge-l", "bleu"]
    clear, none = adjust([compare(s["good"], s["poor"], metrics, 0.95), compare(s["poor"], s["poor-too"], metrics, 0.95)],
                         metrics, 0.05)
    assert clear["rouge-l_diff"] > 0 and clear["rouge-l_reading"] == "good better"
    assert clear["rouge-l_p"] == pytest.approx(1 / 501)
    assert clear["rouge-l_diff_low"] > 0
    assert none["rouge-l_diff"] == 0 and none["rouge-l_reading"] == "no clear difference"
    assert none["rouge-l_p"] == 1.0 and none["bleu_p"] == 1.0


def test_a_paired_difference_is_called_though_the_marginal_intervals_overlap():
    # Every question scores about 2 points higher with lora-2k, but the questions range over 80
    # points: each setup's own interval is far wider than 2, the paired differences are not.
    s, [row] = judged({"lora-1k": [constructed(SPREAD)], "lora-2k": [constructed(shifted(2, seed=1))]},
                      ["rouge-l"], [("lora-1k", "lora-2k")])
    small, big = summary_row(s["lora-1k"], 0.95), summary_row(s["lora-2k"], 0.95)
    assert big["rouge-l_low"] < small["rouge-l_high"]  # the marginal intervals overlap
    assert small["rouge-l_high"] - small["rouge-l_low"] > 5 * 2
    assert row["rouge-l_diff"] == pytest.approx(-2)
    assert row["rouge-l_p"] == pytest.approx(1 / 1001) and row["rouge-l_diff_high"] < 0
    assert row["rouge-l_reading"] == "lora-2k better"


def test_holm_gives_the_textbook_adjusted_p_values():
    # Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> raised to 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # 0.5 x 2 = 1, capped; 0.6 raised to it
    assert holm([0.02]) == pytest.approx([0.02])
    assert holm([0.01, 0.01, 0.2]) == pytest.approx([0.03, 0.03, 0.2])


def test_adjust_corrects_over_every_row_and_metric_and_reads_the_adjusted_p():
    rows = [{"a": "lora-2k", "b": "base", "rouge-l_diff": 3.0, "rouge-l_p": 0.03, "bleu_diff": 1.0, "bleu_p": 0.02},
            {"a": "lora-5k", "b": "base", "rouge-l_diff": -2.0, "rouge-l_p": 0.001, "bleu_diff": 0.5, "bleu_p": 0.5}]
    first, second = adjust(rows, ["rouge-l", "bleu"], alpha=0.05)
    # The family is all four p-values: 0.001 x 4 = 0.004, 0.02 x 3 = 0.06, 0.03 x 2 = 0.06, 0.5.
    assert first["rouge-l_p"] < 0.05 and first["bleu_p"] < 0.05  # significant before the correction
    assert first["rouge-l_p_holm"] == pytest.approx(0.06) and first["bleu_p_holm"] == pytest.approx(0.06)
    assert first["rouge-l_reading"] == first["bleu_reading"] == "no clear difference"
    assert second["rouge-l_p_holm"] == pytest.approx(0.004) and second["rouge-l_reading"] == "base better"
    assert second["bleu_p_holm"] == pytest.approx(0.5) and second["bleu_reading"] == "no clear difference"
    assert rows[0] == {"a": "lora-2k", "b": "base", "rouge-l_diff": 3.0, "rouge-l_p": 0.03, "bleu_diff": 1.0, "bleu_p": 0.02}
    # Alone, the first row's ROUGE-L would be a difference.
    [alone] = adjust(rows[:1], ["rouge-l"], alpha=0.05)
    assert alone["rouge-l_reading"] == "lora-2k better"


def test_a_lower_nll_reads_as_better():
    s, [row] = judged({"lora-2k": [constructed(SPREAD, nll=2.0 + noise(1, 0.5) ** 2)],
                       "base": [constructed(SPREAD, nll=2.5 + noise(1, 0.5) ** 2)]},
                      ["nll", "rouge-l"], [("lora-2k", "base")])
    assert row["nll_diff"] == pytest.approx(-0.5) and row["nll_p_holm"] < 0.01
    assert row["nll_reading"] == "lora-2k better"
    assert row["rouge-l_diff"] == 0 and row["rouge-l_reading"] == "no clear difference"
    v = verdict(s, [row], {"lora-2k": "base"}, {"lora-2k": 1.0}, metric="nll", alpha=0.05, margin=0.1)
    assert v["qualifying"] == ["lora-2k"] and v["best"] == v["choice"] == "lora-2k"
    # The other way round the same data reads "base better", and then nothing qualifies.
    [reverse] = adjust([compare(s["base"], s["lora-2k"], ["nll"], 0.95)], ["nll"], 0.05)
    assert reverse["nll_diff"] == pytest.approx(0.5) and reverse["nll_reading"] == "lora-2k better"
    worse = verdict(s, [reverse], {"base": "lora-2k"}, {"base": 1.0}, metric="nll", alpha=0.05, margin=0.1)
    assert worse["choice"] is None and worse["best"] is None


# --- the verdict ------------------------------------------------------------------------------

REFERENCES = {"lora-1k": "base", "lora-2k": "base", "lora-5k": "base"}
COST = {"lora-1k": 10.0, "lora-2k": 20.0, "lora-5k": 50.0}
PAIRS = [(s, "base") for s in REFERENCES]


def test_a_cheapest_setup_that_does_not_beat_its_reference_is_not_chosen():
    # lora-1k is a little above base on average but all over the place (no paired difference);
    # lora-2k is 5 above on every question; the margin is wide enough to take either.
    scores = {"base": [constructed(SPREAD)], "lora-1k": [constructed(shifted(0.3, seed=1, sd=15))],
              "lora-2k": [constructed(shifted(5, seed=2))]}
    s, rows = judged(scores, ["rouge-l"], PAIRS[:2])
    assert rows[0]["rouge-l_diff"] == pytest.approx(0.3) and rows[0]["rouge-l_p_holm"] >= 0.05
    v = verdict(s, rows, {k: REFERENCES[k] for k in ("lora-1k", "lora-2k")}, COST, metric="rouge-l", alpha=0.05,
                margin=100.0)
    assert v["qualifying"] == ["lora-2k"]
    assert v["best"] == "lora-2k" and v["choice"] == "lora-2k"
    assert "lora-1k" not in v["shortfall_bound"]


def test_when_nothing_beats_its_reference_there_is_no_best_and_no_choice():
    scores = {"base": [constructed(SPREAD)], "lora-1k": [constructed(shifted(0.3, seed=1, sd=15))],
              "lora-2k": [constructed(shifted(-3, seed=2))], "lora-5k": [constructed(SPREAD)]}
    s, rows = judged(scores, ["rouge-l"], PAIRS)
    assert rows[1]["rouge-l_reading"] == "base better"  # lora-2k is clearly worse: no qualification either
    v = verdict(s, rows, REFERENCES, COST, metric="rouge-l", alpha=0.05, margin=100.0)
    assert v["choice"] is None and v["best"] is None and v["qualifying"] == []
    assert "Holm" in v["rule"]


def cost_rule_setups():
    # All three beat base on every question; lora-5k is best, lora-2k 1 point short of it, lora-1k 5.
    scores = {"base": [constructed(SPREAD)], "lora-1k": [constructed(shifted(10, seed=1))],
              "lora-2k": [constructed(shifted(14, seed=2))], "lora-5k": [constructed(shifted(15, seed=3))]}
    return judged(scores, ["rouge-l"], PAIRS)


def test_the_cheapest_setup_within_the_margin_of_the_best_is_chosen_and_one_beyond_it_is_not():
    s, rows = cost_rule_setups()
    kwargs = {"metric": "rouge-l", "alpha": 0.05}
    v = verdict(s, rows, REFERENCES, COST, margin=2.0, **kwargs)
    assert v["qualifying"] == ["lora-1k", "lora-2k", "lora-5k"] and v["best"] == "lora-5k"
    # One-sided 95% bounds of each shortfall from the best: about 5 and 1 (plus a little noise), 0.
    assert v["shortfall_bound"]["lora-1k"] == pytest.approx(5, abs=0.2)
    assert v["shortfall_bound"]["lora-2k"] == pytest.approx(1, abs=0.2)
    assert v["shortfall_bound"]["lora-5k"] == 0
    assert v["within_margin"] == ["lora-2k", "lora-5k"] and v["choice"] == "lora-2k"
    # A margin that takes the 5-point shortfall in makes the cheapest the choice ...
    assert verdict(s, rows, REFERENCES, COST, margin=6.0, **kwargs)["choice"] == "lora-1k"
    # ... and one that takes no shortfall in leaves the best, however costly.
    assert verdict(s, rows, REFERENCES, COST, margin=0.5, **kwargs)["choice"] == "lora-5k"


# --- pairs and questions ----------------------------------------------------------------------

def test_comparisons_pair_each_setup_with_its_reference_adjacent_scales_and_the_other_method():
    pairs = comparisons(["lora", "qlora"], ["1k", "2k", "5k"], {"lora": "base", "qlora": "base-4bit"})
    assert pairs[:6] == [("lora-1k", "base"), ("lora-2k", "base"), ("lora-5k", "base"),
                         ("qlora-1k", "base-4bit"), ("qlora-2k", "base-4bit"), ("qlora-5k", "base-4bit")]
    assert ("lora-2k", "lora-1k") in pairs and ("qlora-5k", "qlora-2k") in pairs and ("lora-5k", "lora-1k") not in pairs
    assert pairs[-3:] == [("lora-1k", "qlora-1k"), ("lora-2k", "qlora-2k"), ("lora-5k", "qlora-5k")]
    assert len(comparisons(["lora"], ["1k"], {"lora": "base"})) == 1


def test_runs_scored_on_other_questions_cannot_be_compared():
    check_same_questions({"a": scored(POOR), "b": scored(REFS)})
    with pytest.raises(ValueError, match="other test questions"):
        check_same_questions({"a": scored(POOR), "b": scored(REFS)[:-1]})
