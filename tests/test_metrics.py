"""Tests of medqa_scale.evaluate.metrics: jieba segmentation, ROUGE on Chinese text (against hand-computed
values) and BLEU with sacrebleu's zh tokenizer, per-sample scores and bootstrap intervals. Run: python -m pytest -q tests/test_metrics.py
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from medqa_scale.evaluate.metrics import (CHAR_BLEU, METRICS, bleu_from_stats, bleu_zh, bootstrap_indices, char_bleu4,
                                 char_bleu4_per_sample, interval, paired_p_value, per_sample_scores, point_estimates,
                                 resampled, rouge_per_sample, rouge_zh, scores_matrix, segment)


def bootstrap_intervals(preds, refs, indices, confidence):
    """Intervals of one answer set, as the evaluate stage computes them."""
    values = resampled(scores_matrix([per_sample_scores(preds, refs)]), indices)
    return {k: interval(v, confidence) for k, v in values.items()}


def test_segment_of_the_hand_checked_strings():
    # The expected values below are derived from these segmentations.
    assert segment("我今天头痛，需要休息") == "我 今天 头痛 ， 需要 休息"
    assert segment("我昨天头痛，需要吃药") == "我 昨天 头痛 ， 需要 吃药"
    assert segment("高血压患者应按时服药") == "高血压 患者 应 按时 服药"
    assert segment("高血压患者平时应低盐饮食并按时服药") == "高血压 患者 平时 应低 盐 饮食 并 按时 服药"
    assert segment("  ") == ""


def test_rouge_identical_is_100():
    text = "高血压患者应低盐饮食，按时服药。"
    scores = rouge_zh([text], [text])
    assert set(scores) == {"rouge-1", "rouge-2", "rouge-l"}
    for v in scores.values():
        assert v == pytest.approx(100, abs=1e-4)


def test_rouge_disjoint_is_0():
    assert rouge_zh(["建议多喝水"], ["骨折"]) == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}


def test_rouge_empty_prediction_scores_0_without_raising():
    assert rouge_zh([""], ["骨折需要固定"]) == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    assert rouge_zh(["   "], ["骨折需要固定"]) == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}


def test_rouge_partial_overlap_hand_computed():
    # pred: 我 今天 头痛 ， 需要 休息   ref: 我 昨天 头痛 ， 需要 吃药   (6 words each)
    # unigrams: 4 shared (我 头痛 ， 需要) -> P = R = 4/6 -> F1 = 2/3
    # bigrams: 5 each, 2 shared ((头痛,，) (，,需要)) -> F1 = 2/5
    # LCS: 我 头痛 ， 需要 = 4 -> F1 = 2/3
    scores = rouge_zh(["我今天头痛，需要休息"], ["我昨天头痛，需要吃药"])
    assert scores["rouge-1"] == pytest.approx(100 * 2 / 3, rel=1e-6)
    assert scores["rouge-2"] == pytest.approx(40.0, rel=1e-6)
    assert scores["rouge-l"] == pytest.approx(100 * 2 / 3, rel=1e-6)


def test_rouge_partial_overlap_unequal_lengths_hand_computed():
    # pred: 高血压 患者 应 按时 服药 (5)   ref: 高血压 患者 平时 应低 盐 饮食 并 按时 服药 (9)
    # unigrams shared 4: P=4/5 R=4/9 -> F1 = 2*(16/45)/(56/45) = 4/7
    # bigrams 4 vs 8, shared 2 ((高血压,患者) (按时,服药)): P=1/2 R=1/4 -> F1 = 1/3
    # LCS 高血压 患者 按时 服药 = 4 -> F1 = 4/7
    scores = rouge_zh(["高血压患者应按时服药"], ["高血压患者平时应低盐饮食并按时服药"])
    assert scores["rouge-1"] == pytest.approx(100 * 4 / 7, rel=1e-6)
    assert scores["rouge-2"] == pytest.approx(100 / 3, rel=1e-6)
    assert scores["rouge-l"] == pytest.approx(100 * 4 / 7, rel=1e-6)


def test_rouge_is_a_mean_over_all_samples_including_empty_ones():
    scores = rouge_zh(["", "我今天头痛，需要休息"], ["骨折", "我昨天头痛，需要吃药"])
    assert scores["rouge-1"] == pytest.approx(100 * 2 / 3 / 2, rel=1e-6)
    assert scores["rouge-2"] == pytest.approx(20.0, rel=1e-6)
    assert scores["rouge-l"] == pytest.approx(100 / 3, rel=1e-6)


@pytest.mark.parametrize("preds,refs", [(["a"], ["a", "b"]), (["a", "b"], ["a"]), ([], [])])
def test_rouge_mismatched_or_empty_lists_raise(preds, refs):
    with pytest.raises(ValueError):
        rouge_zh(preds, refs)


def test_bleu_identical_is_100_with_zh_signature():
    score, signature = bleu_zh(["高血压患者应低盐饮食。", "多休息。"], ["高血压患者应低盐饮食。", "多休息。"])
    assert score == pytest.approx(100.0, abs=1e-6)
    assert "tok:zh" in signature.split("|")
    assert "nrefs:1" in signature.split("|")


def test_bleu_disjoint_is_0():
    score, _ = bleu_zh(["骨折需要固定"], ["感冒多喝水吧"])
    assert score == pytest.approx(0.0, abs=1e-9)


def test_rouge_per_sample_is_what_the_mean_averages():
    preds, refs = ["头痛 要 多 休息", "", "发热 就医"], ["头痛 要 多 休息", "咳嗽 喝水", "发热 请 就医"]
    per_sample = rouge_per_sample(preds, refs)
    assert per_sample["rouge-1"][0] == pytest.approx(100) and per_sample["rouge-1"][1] == 0.0
    assert rouge_zh(preds, refs)["rouge-1"] == pytest.approx(sum(per_sample["rouge-1"]) / 3)


def test_bootstrap_intervals_contain_the_score_and_resample_questions_with_the_seed():
    preds = ["头痛要多休息", "发热请就医吃药", "咳嗽多喝水", "腹泻要补液", "失眠少喝咖啡", "胃痛少吃辣"]
    refs = ["头痛应多休息睡觉", "发热要去医院", "咳嗽要多喝温水", "腹泻需要补液盐", "失眠应规律作息", "胃痛要清淡饮食"]
    indices = bootstrap_indices(len(preds), 500, seed=7)
    assert indices.shape == (500, 6) and (bootstrap_indices(6, 500, seed=7) == indices).all()
    intervals = bootstrap_intervals(preds, refs, indices, 0.95)
    scores = {**rouge_zh(preds, refs), "bleu": bleu_zh(preds, refs)[0]}
    for key, score in scores.items():
        assert intervals[key]["low"] <= score <= intervals[key]["high"], key
        assert intervals[key]["low"] < intervals[key]["high"] or key == "rouge-2", key  # no bigram is shared
    # The interval of BLEU comes from summed sentence statistics: resampling every question once
    # (the identity resample) gives corpus BLEU itself.
    identity = bootstrap_intervals(preds, refs, np.tile(np.arange(6), (3, 1)), 0.95)
    assert identity["bleu"]["low"] == pytest.approx(scores["bleu"]) == identity["bleu"]["high"]
    assert identity["rouge-l"]["low"] == pytest.approx(scores["rouge-l"])


def test_per_sample_scores_give_the_corpus_scores_back():
    preds = ["头痛要多休息", "发热请就医吃药", "", "腹泻要补液"]
    refs = ["头痛应多休息睡觉", "发热要去医院", "咳嗽要多喝温水", "腹泻需要补液盐"]
    scores = per_sample_scores(preds, refs)
    assert set(scores[0]) == {"rouge-1", "rouge-2", "rouge-l", CHAR_BLEU, "bleu_stats"}
    values = {k: float(v[0]) for k, v in point_estimates(scores_matrix([scores])).items()}
    assert set(values) == set(METRICS)
    assert values["bleu"] == pytest.approx(bleu_zh(preds, refs)[0])
    assert bleu_from_stats(np.sum([s["bleu_stats"] for s in scores], axis=0)) == pytest.approx(bleu_zh(preds, refs)[0])
    for key, value in rouge_zh(preds, refs).items():
        assert values[key] == pytest.approx(value)
    assert values[CHAR_BLEU] == pytest.approx(char_bleu4(preds, refs))


def test_several_seeds_widen_the_interval_and_identical_seeds_do_not():
    preds = ["头痛要多休息", "发热请就医吃药", "咳嗽多喝水", "腹泻要补液", "失眠少喝咖啡", "胃痛少吃辣"]
    refs = ["头痛应多休息睡觉", "发热要去医院", "咳嗽要多喝温水", "腹泻需要补液盐", "失眠应规律作息", "胃痛要清淡饮食"]
    good, bad = per_sample_scores(refs, refs), per_sample_scores(preds, refs)
    questions = bootstrap_indices(6, 400, seed=3)
    one = resampled(scores_matrix([bad]), questions)
    same = resampled(scores_matrix([bad, bad]), questions, np.random.default_rng(0))
    assert np.allclose(one["rouge-l"], same["rouge-l"]) and np.allclose(one["bleu"], same["bleu"])
    # A seed that answers perfectly and one that does not: the seeds' spread widens the interval.
    mixed = resampled(scores_matrix([bad, good]), questions, np.random.default_rng(0))
    width = lambda v: interval(v, 0.95)["high"] - interval(v, 0.95)["low"]  # noqa: E731
    assert width(mixed["rouge-l"]) > 2 * width(one["rouge-l"])
    assert interval(mixed["rouge-l"], 0.95)["high"] == pytest.approx(100)  # both seeds drawn as the good one


def test_paired_p_value_is_small_for_a_consistent_difference_and_large_for_none():
    rng = np.random.default_rng(0)
    assert paired_p_value(5.0, 5.0 + rng.normal(0, 1, 999)) == pytest.approx(1 / 1000)
    assert paired_p_value(0.1, 0.1 + rng.normal(0, 1, 999)) > 0.8
    # Shifted to the null: resampled differences 2 +- 1 around an observed 2 cross 0 about 5% of the time.
    assert 0.02 < paired_p_value(2.0, 2.0 + rng.normal(0, 1, 9999)) < 0.08


def test_a_wider_confidence_gives_a_wider_interval():
    values = np.arange(100, dtype=float)
    narrow, wide = interval(values, 0.5), interval(values, 0.95)
    assert wide["low"] < narrow["low"] < narrow["high"] < wide["high"]
    assert narrow == {"low": pytest.approx(24.75), "high": pytest.approx(74.25)}


def test_char_bleu4_is_llama_factorys_sentence_bleu_over_characters_hand_computed():
    # hyp 头痛多休息, ref 头痛要多休息: precisions 5/5, 3/4, 1/3, 0/2 -> method3 turns the first zero
    # into 1/(2*2); geometric mean (1 * 3/4 * 1/3 * 1/4)^(1/4) = 0.5; brevity penalty exp(1 - 6/5).
    expected = 100 * 0.5 * math.exp(1 - 6 / 5)
    assert char_bleu4_per_sample(["头痛多休息", ""], ["头痛要多休息", "咳嗽"]) == [pytest.approx(expected), 0.0]
    assert char_bleu4_per_sample(["头痛要多休息"], ["头痛要多休息"]) == [pytest.approx(100)]
    assert char_bleu4(["头痛多休息", ""], ["头痛要多休息", "咳嗽"]) == pytest.approx(expected / 2)
    preds, refs = ["头痛多休息", "发热请就医"], ["头痛要多休息", "发热要去医院"]
    intervals = bootstrap_intervals(preds, refs, np.tile(np.arange(2), (3, 1)), 0.95)
    assert intervals[CHAR_BLEU]["low"] == pytest.approx(char_bleu4(preds, refs))
