"""medqa_scale.evaluate.comparison: setups over seeds and questions, paired comparisons and the verdict.

Run: python -m pytest -q tests/test_comparison.py
"""

from __future__ import annotations

import numpy as np
import pytest

from medqa_scale.evaluate.comparison import (check_same_questions, compare, comparisons, setups, summary_row, verdict)
from medqa_scale.evaluate.metrics import per_sample_scores

REFS = ["头痛应多休息睡觉", "发热要去医院", "咳嗽要多喝温水", "腹泻需要补液盐", "失眠应规律作息", "胃痛要清淡饮食"] * 5
POOR = ["头痛要多休息", "发热请就医吃药", "咳嗽多喝水", "腹泻要补液", "失眠少喝咖啡", "胃痛少吃辣"] * 5


def scored(preds):
    return [{"id": i, **s} for i, s in enumerate(per_sample_scores(preds, REFS))]


def test_a_setup_with_one_seed_reports_its_scores_with_an_interval_and_no_spread():
    [setup] = setups({"lora-1k": [scored(POOR)]}, resamples=300, seed=0).values()
    row = summary_row(setup, 0.95)
    assert row["seeds"] == 1 and row["rouge-l_seed_sd"] == 0.0
    assert row["rouge-l_low"] < row["rouge-l"] < row["rouge-l_high"]


def test_several_seeds_report_their_mean_and_spread():
    [setup] = setups({"lora-1k": [scored(POOR), scored(REFS)]}, resamples=300, seed=0).values()
    row = summary_row(setup, 0.95)
    poor = summary_row(setups({"x": [scored(POOR)]}, resamples=300, seed=0)["x"], 0.95)
    assert row["seeds"] == 2
    assert row["rouge-l"] == pytest.approx((poor["rouge-l"] + 100) / 2)
    assert row["rouge-l_seed_sd"] == pytest.approx(np.std([poor["rouge-l"], 100], ddof=1))
    assert row["rouge-l_high"] == pytest.approx(100)


def test_a_clear_difference_is_called_and_an_overlap_is_not():
    s = setups({"good": [scored(REFS)], "poor": [scored(POOR)], "poor-too": [scored(POOR)]}, resamples=500, seed=1)
    clear = compare(s["good"], s["poor"], 0.95)
    assert clear["rouge-l_diff"] > 0 and clear["rouge-l_reading"] == "good better"
    assert clear["rouge-l_p"] == pytest.approx(1 / 501)
    assert clear["rouge-l_diff_low"] > 0
    none = compare(s["poor"], s["poor-too"], 0.95)
    assert none["rouge-l_diff"] == 0 and none["rouge-l_reading"] == "no clear difference"
    assert none["rouge-l_p"] == 1.0 and none["bleu_p"] == 1.0


def test_comparisons_pair_each_setup_with_its_reference_adjacent_scales_and_the_other_method():
    pairs = comparisons(["lora", "qlora"], ["1k", "2k", "5k"], {"lora": "base", "qlora": "base-4bit"})
    assert pairs[:6] == [("lora-1k", "base"), ("lora-2k", "base"), ("lora-5k", "base"),
                         ("qlora-1k", "base-4bit"), ("qlora-2k", "base-4bit"), ("qlora-5k", "base-4bit")]
    assert ("lora-2k", "lora-1k") in pairs and ("qlora-5k", "qlora-2k") in pairs and ("lora-5k", "lora-1k") not in pairs
    assert pairs[-3:] == [("lora-1k", "qlora-1k"), ("lora-2k", "qlora-2k"), ("lora-5k", "qlora-5k")]
    assert len(comparisons(["lora"], ["1k"], {"lora": "base"})) == 1


def row(run, score, low, high, cost):
    return {"run": run, "rouge-l": score, "rouge-l_low": low, "rouge-l_high": high, "train_runtime_s": cost}


def test_the_verdict_is_the_cheapest_setup_whose_interval_overlaps_the_best():
    rows = [row("lora-1k", 30, 27, 33, 10), row("lora-2k", 45, 41, 49, 20), row("lora-5k", 48, 44, 52, 50),
            row("qlora-5k", 47, 43, 51, 70)]
    v = verdict(rows)
    assert v["best"] == "lora-5k" and v["choice"] == "lora-2k"
    assert v["indistinguishable_from_best"] == ["lora-2k", "lora-5k", "qlora-5k"]
    assert "cheapest" in v["rule"] and "overlaps" in v["rule"]


def test_a_best_setup_clear_of_all_others_is_the_verdict_however_costly():
    rows = [row("lora-1k", 30, 27, 33, 10), row("lora-5k", 60, 55, 65, 50)]
    assert verdict(rows)["choice"] == "lora-5k" and verdict(rows)["indistinguishable_from_best"] == ["lora-5k"]


def test_runs_scored_on_other_questions_cannot_be_compared():
    check_same_questions({"a": scored(POOR), "b": scored(REFS)})
    with pytest.raises(ValueError, match="other test questions"):
        check_same_questions({"a": scored(POOR), "b": scored(REFS)[:-1]})
