"""Tests of medqa_scale.evaluate.metrics: jieba words without punctuation, the headline ROUGE (every
n-gram occurrence counted) against hand-computed values, LLaMA-Factory's ROUGE and char-BLEU-4
against LLaMA-Factory's own code, BLEU with sacrebleu's zh tokenizer, answer health, corpus
metrics from summed statistics, and the (grouped, two-level) bootstrap.
Run: python -m pytest -q tests/test_metrics.py
"""

from __future__ import annotations

import math

import jieba
import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_chinese import Rouge

from medqa_scale.evaluate.metrics import (CHAR_BLEU, LF_ROUGE_KEYS, METRICS, NLL, bleu_from_stats, bleu_zh, bootstrap_counts,
                                          bootstrap_indices, char_bleu4, char_bleu4_per_sample, health_per_sample,
                                          health_summary, interval, lf_rouge_per_sample, nll_from_stats, paired_p_value,
                                          per_sample_scores, point_estimates, repeated_ngram_share, resampled,
                                          rouge_per_sample, rouge_zh, scores_matrix, segment, words)

PREDS = ["头痛要多休息", "发热请就医吃药", "咳嗽多喝水", "腹泻要补液", "失眠少喝咖啡", "胃痛少吃辣"]
REFS = ["头痛应多休息睡觉", "发热要去医院", "咳嗽要多喝温水", "腹泻需要补液盐", "失眠应规律作息", "胃痛要清淡饮食"]


def bootstrap_intervals(preds, refs, counts, confidence):
    """Intervals of one answer set, as the evaluate stage computes them."""
    values = resampled(scores_matrix([per_sample_scores(preds, refs)]), counts)
    return {k: interval(v, confidence) for k, v in values.items()}


def width(values, confidence=0.95):
    bounds = interval(values, confidence)
    return bounds["high"] - bounds["low"]


# --- words and the headline ROUGE -------------------------------------------------------------

def test_segment_of_the_hand_checked_strings_leaves_punctuation_and_whitespace_out():
    # The expected values below are derived from these segmentations.
    assert segment("我今天头痛，需要休息") == "我 今天 头痛 需要 休息"
    assert segment("我昨天头痛，需要吃药") == "我 昨天 头痛 需要 吃药"
    assert segment("高血压患者应按时服药") == "高血压 患者 应 按时 服药"
    assert segment("高血压患者平时应低盐饮食并按时服药") == "高血压 患者 平时 应低 盐 饮食 并 按时 服药"
    assert words("头痛要多休息") == ["头痛", "要", "多", "休息"]
    # Every punctuation category (P*): full-width, ASCII, quotes, brackets, ellipsis, dash.
    assert words("“按时服药”很重要！") == ["按时", "服药", "很", "重要"]
    assert words("建议：1. 低盐饮食；2. 规律作息。") == ["建议", "1", "低盐", "饮食", "2", "规律", "作息"]
    assert words("多喝水……注意休息（每天8小时）") == ["多喝水", "注意", "休息", "每天", "8", "小时"]
    assert segment("  ") == "" and segment("。，！？") == ""


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


def test_rouge_partial_overlap_hand_computed_punctuation_is_not_a_word():
    # pred: 我 今天 头痛 需要 休息   ref: 我 昨天 头痛 需要 吃药   (5 words each; the "，" is gone)
    # unigrams: 3 shared (我 头痛 需要) -> P = R = 3/5 -> F1 = 3/5
    # bigrams: 4 each, 1 shared ((头痛,需要), which the comma used to split) -> F1 = 1/4
    # LCS: 我 头痛 需要 = 3 -> F1 = 3/5
    scores = rouge_zh(["我今天头痛，需要休息"], ["我昨天头痛，需要吃药"])
    assert scores["rouge-1"] == pytest.approx(60.0, rel=1e-6)
    assert scores["rouge-2"] == pytest.approx(25.0, rel=1e-6)
    assert scores["rouge-l"] == pytest.approx(60.0, rel=1e-6)
    # LLaMA-Factory counts the comma as a shared word: 6 words each, 4 shared unigrams -> 2/3;
    # 5 bigrams each, 2 shared ((头痛,，) (，,需要)) -> 2/5; LCS 我 头痛 ， 需要 = 4 -> 2/3.
    lf = lf_rouge_per_sample(["我今天头痛，需要休息"], ["我昨天头痛，需要吃药"])
    assert lf == {"lf-rouge-1": [66.6667], "lf-rouge-2": [40.0], "lf-rouge-l": [66.6667]}


def test_punctuation_inside_a_sentence_changes_nothing_on_the_headline():
    # pred: 头痛 需要 休息 (the "。" and "！" dropped) = ref: 头痛 需要 休息 -> 100 on all three.
    scores = rouge_per_sample(["头痛。需要休息！"], ["头痛需要休息"])
    assert scores == {k: [pytest.approx(100, abs=1e-4)] for k in ("rouge-1", "rouge-2", "rouge-l")}
    # LLaMA-Factory: pred 头痛 。 需要 休息 ！ (5 tokens) vs 3: unigrams P = 3/5, R = 1 -> F1 = 3/4.
    assert lf_rouge_per_sample(["头痛。需要休息！"], ["头痛需要休息"])["lf-rouge-1"] == [75.0]


def test_rouge_partial_overlap_unequal_lengths_hand_computed():
    # pred: 高血压 患者 应 按时 服药 (5)   ref: 高血压 患者 平时 应低 盐 饮食 并 按时 服药 (9)
    # unigrams shared 4: P=4/5 R=4/9 -> F1 = 2*(16/45)/(56/45) = 4/7
    # bigrams 4 vs 8, shared 2 ((高血压,患者) (按时,服药)): P=1/2 R=1/4 -> F1 = 1/3
    # LCS 高血压 患者 按时 服药 = 4 -> F1 = 4/7
    scores = rouge_zh(["高血压患者应按时服药"], ["高血压患者平时应低盐饮食并按时服药"])
    assert scores["rouge-1"] == pytest.approx(100 * 4 / 7, rel=1e-6)
    assert scores["rouge-2"] == pytest.approx(100 / 3, rel=1e-6)
    assert scores["rouge-l"] == pytest.approx(100 * 4 / 7, rel=1e-6)


def test_an_answer_repeated_twenty_times_loses_its_headline_rouge_but_not_llama_factorys():
    answer = "头痛要多休息"  # 头痛 要 多 休息: 4 words, 3 bigrams
    looped = answer * 20  # 80 words, 79 bigrams (the joins 休息|头痛 included)
    assert rouge_per_sample([answer], [answer])["rouge-1"] == [pytest.approx(100, abs=1e-4)]
    scores = rouge_per_sample([looped], [answer])
    # Every occurrence counts, matched at most as often as the reference has it:
    # unigrams: 4 of 80 match -> P = 0.05, R = 1 -> F1 = 2*0.05/1.05
    # bigrams: 3 of 79 match -> P = 3/79, R = 1 -> F1 = 2*(3/79)/(82/79) = 3/41
    # LCS = 4 -> P = 0.05, R = 1 -> F1 = 2*0.05/1.05
    assert scores["rouge-1"] == [pytest.approx(100 * 2 * 0.05 / 1.05, rel=1e-6)]
    assert scores["rouge-2"] == [pytest.approx(100 * 3 / 41, rel=1e-6)]
    assert scores["rouge-l"] == [pytest.approx(100 * 2 * 0.05 / 1.05, rel=1e-6)]
    # LLaMA-Factory counts each distinct n-gram once: the loop has the same 4 unigrams -> 100; its
    # distinct bigrams are the 3 of the answer and (休息,头痛) -> P = 3/4, R = 1 -> F1 = 6/7.
    lf = lf_rouge_per_sample([looped], [answer])
    assert lf["lf-rouge-1"] == [100.0]
    assert lf["lf-rouge-2"] == [round(100 * 6 / 7, 4)]


def test_a_punctuation_only_answer_scores_0_on_the_headline_and_not_on_llama_factorys():
    # Headline: "。，" has no words -> 0 on all three.
    assert rouge_per_sample(["。，"], ["头痛，需要休息。"]) == {"rouge-1": [0.0], "rouge-2": [0.0], "rouge-l": [0.0]}
    # LLaMA-Factory: pred 。 ， (2 tokens), ref 头痛 ， 需要 休息 。 (5): both shared -> P = 1, R = 2/5,
    # F1 = 2*0.4/1.4 = 4/7; no bigram shared; LCS 1 -> P = 1/2, R = 1/5 -> F1 = 2/7.
    lf = lf_rouge_per_sample(["。，"], ["头痛，需要休息。"])
    assert lf == {"lf-rouge-1": [round(400 / 7, 4)], "lf-rouge-2": [0.0], "lf-rouge-l": [round(200 / 7, 4)]}
    assert lf["lf-rouge-1"][0] > 0


def test_rouge_is_a_mean_over_all_samples_including_empty_ones():
    scores = rouge_zh(["", "我今天头痛，需要休息"], ["骨折", "我昨天头痛，需要吃药"])
    assert scores["rouge-1"] == pytest.approx(60.0 / 2, rel=1e-6)
    assert scores["rouge-2"] == pytest.approx(25.0 / 2, rel=1e-6)
    assert scores["rouge-l"] == pytest.approx(60.0 / 2, rel=1e-6)


@pytest.mark.parametrize("preds,refs", [(["a"], ["a", "b"]), (["a", "b"], ["a"]), ([], [])])
def test_rouge_mismatched_or_empty_lists_raise(preds, refs):
    with pytest.raises(ValueError):
        rouge_zh(preds, refs)
    with pytest.raises(ValueError):
        lf_rouge_per_sample(preds, refs)


def test_rouge_per_sample_is_what_the_mean_averages():
    preds, refs = ["头痛 要 多 休息", "", "发热 就医"], ["头痛 要 多 休息", "咳嗽 喝水", "发热 请 就医"]
    per_sample = rouge_per_sample(preds, refs)
    assert per_sample["rouge-1"][0] == pytest.approx(100) and per_sample["rouge-1"][1] == 0.0
    assert rouge_zh(preds, refs)["rouge-1"] == pytest.approx(sum(per_sample["rouge-1"]) / 3)


# --- LLaMA-Factory's numbers ------------------------------------------------------------------

def llama_factory_scores(decoded_preds, decoded_labels):
    """LLaMA-Factory's ComputeSimilarity (src/llamafactory/train/sft/metric.py), inline."""
    score_dict = {"rouge-1": [], "rouge-2": [], "rouge-l": [], "bleu-4": []}
    for pred, label in zip(decoded_preds, decoded_labels):
        hypothesis = list(jieba.cut(pred))
        reference = list(jieba.cut(label))
        if len(" ".join(hypothesis).split()) == 0 or len(" ".join(reference).split()) == 0:
            result = {"rouge-1": {"f": 0.0}, "rouge-2": {"f": 0.0}, "rouge-l": {"f": 0.0}}
        else:
            rouge = Rouge()
            scores = rouge.get_scores(" ".join(hypothesis), " ".join(reference))
            result = scores[0]
        for k, v in result.items():
            score_dict[k].append(round(v["f"] * 100, 4))
        bleu_score = sentence_bleu([list(label)], list(pred), smoothing_function=SmoothingFunction().method3)
        score_dict["bleu-4"].append(round(bleu_score * 100, 4))
    return score_dict


LF_PAIRS = [
    ("高血压患者应低盐饮食，按时服药。", "高血压患者应低盐饮食，按时服药。"),  # identical
    ("我今天头痛，需要休息", "我昨天头痛，需要吃药"),  # partial, punctuation shared
    ("", "骨折需要固定"),  # empty
    ("   ", "骨折需要固定"),  # whitespace only
    ("。，", "头痛，需要休息。"),  # punctuation only
    ("头痛要多休息" * 20, "头痛要多休息"),  # a loop
    ("发热38.5℃，可服用布洛芬（每次1片）。", "体温超过38.5℃时可以服用布洛芬，每次1片，每天不超过4次。"),  # digits, symbols
    ("请问COVID-19疫苗要打几针？\n一般两针。", "COVID-19疫苗一般接种两剂，间隔三到八周。"),  # Latin, ？, newline
    ("多喝水……注意休息！别熬夜！", "注意休息，多喝温水，避免熬夜。"),  # ellipsis, several sentences
    ("建议：1. 低盐饮食；2. 规律作息。", "建议低盐低脂饮食，规律作息，定期复查血压。"),  # ASCII spaces and dots
    ("“按时服药”很重要", "请按时服药"),  # quotes
]


def test_lf_keys_reproduce_llama_factorys_rouge_and_bleu_exactly():
    preds, labels = [p for p, _ in LF_PAIRS], [r for _, r in LF_PAIRS]
    expected = llama_factory_scores(preds, labels)
    ours = lf_rouge_per_sample(preds, labels)
    for key in ("rouge-1", "rouge-2", "rouge-l"):
        assert ours[f"lf-{key}"] == expected[key], key
    assert char_bleu4_per_sample(preds, labels) == expected["bleu-4"]
    scores = per_sample_scores(preds, labels)
    assert [s[CHAR_BLEU] for s in scores] == expected["bleu-4"]
    assert [s["lf-rouge-l"] for s in scores] == expected["rouge-l"]
    # The pairs are varied enough to tell the two ROUGEs apart.
    assert sum(a != b for a, b in zip(ours["lf-rouge-1"], rouge_per_sample(preds, labels)["rouge-1"])) >= 5


def test_char_bleu4_of_a_whitespace_only_answer_is_llama_factorys():
    preds, labels = ["  "], ["服用 2 片 每天 3 次"]
    assert llama_factory_scores(preds, labels)["bleu-4"][0] > 0  # spaces match the reference's spaces
    assert char_bleu4_per_sample(preds, labels) == llama_factory_scores(preds, labels)["bleu-4"]


def test_char_bleu4_is_llama_factorys_sentence_bleu_over_characters_hand_computed():
    # hyp 头痛多休息, ref 头痛要多休息: precisions 5/5, 3/4, 1/3, 0/2 -> method3 turns the first zero
    # into 1/(2*2); geometric mean (1 * 3/4 * 1/3 * 1/4)^(1/4) = 0.5; brevity penalty exp(1 - 6/5).
    expected = 100 * 0.5 * math.exp(1 - 6 / 5)
    assert char_bleu4_per_sample(["头痛多休息", ""], ["头痛要多休息", "咳嗽"]) == [pytest.approx(expected, abs=1e-4), 0.0]
    assert char_bleu4_per_sample(["头痛要多休息"], ["头痛要多休息"]) == [pytest.approx(100)]
    assert char_bleu4(["头痛多休息", ""], ["头痛要多休息", "咳嗽"]) == pytest.approx(expected / 2, abs=1e-4)
    preds, refs = ["头痛多休息", "发热请就医"], ["头痛要多休息", "发热要去医院"]
    intervals = bootstrap_intervals(preds, refs, np.ones((3, 2)), 0.95)
    assert intervals[CHAR_BLEU]["low"] == pytest.approx(char_bleu4(preds, refs))


# --- BLEU -------------------------------------------------------------------------------------

def test_bleu_identical_is_100_with_zh_signature():
    score, signature = bleu_zh(["高血压患者应低盐饮食。", "多休息。"], ["高血压患者应低盐饮食。", "多休息。"])
    assert score == pytest.approx(100.0, abs=1e-6)
    assert "tok:zh" in signature.split("|")
    assert "nrefs:1" in signature.split("|")


def test_bleu_disjoint_is_0():
    score, _ = bleu_zh(["骨折需要固定"], ["感冒多喝水吧"])
    assert score == pytest.approx(0.0, abs=1e-9)


def test_per_sample_scores_give_the_corpus_scores_back():
    preds = ["头痛要多休息", "发热请就医吃药", "", "腹泻要补液"]
    refs = ["头痛应多休息睡觉", "发热要去医院", "咳嗽要多喝温水", "腹泻需要补液盐"]
    scores = per_sample_scores(preds, refs)
    assert set(scores[0]) == {"rouge-1", "rouge-2", "rouge-l", *LF_ROUGE_KEYS, CHAR_BLEU, "bleu_stats"}
    values = {k: float(v[0]) for k, v in point_estimates(scores_matrix([scores])).items()}
    assert set(values) == set(METRICS)
    assert values["bleu"] == pytest.approx(bleu_zh(preds, refs)[0])
    assert bleu_from_stats(np.sum([s["bleu_stats"] for s in scores], axis=0)) == pytest.approx(bleu_zh(preds, refs)[0])
    for key, value in rouge_zh(preds, refs).items():
        assert values[key] == pytest.approx(value)
    for key, value in lf_rouge_per_sample(preds, refs).items():
        assert values[key] == pytest.approx(np.mean(value))
    assert values[CHAR_BLEU] == pytest.approx(char_bleu4(preds, refs))


# --- answer health ----------------------------------------------------------------------------

def test_repeated_4gram_share_of_a_loop_is_near_1_and_of_distinct_text_0():
    # 120 characters cycling through 6: 117 4-grams, 6 distinct -> 1 - 6/117.
    assert repeated_ngram_share("头痛要多休息" * 20) == pytest.approx(1 - 6 / 117)
    assert repeated_ngram_share("头痛要多休息" * 20) > 0.9
    assert repeated_ngram_share("高血压患者应低盐饮食，按时服药。") == 0.0
    assert repeated_ngram_share("头痛") == 0.0  # too short for a 4-gram
    # Whitespace is left out: a loop separated by spaces is still a loop.
    assert repeated_ngram_share(" ".join(["头痛要多休息"] * 20)) == pytest.approx(1 - 6 / 117)
    # Half the text repeated once: "ABCDEFGH"+"ABCDEFGH": 13 4-grams, 8 distinct -> 5/13.
    assert repeated_ngram_share("高血压患者应低盐" * 2) == pytest.approx(5 / 13)


def test_health_per_sample_detects_broken_characters_running_out_and_length():
    ok = health_per_sample("多休息", "头痛应多休息", ran_out=False)
    assert ok == {"ran_to_max_new_tokens": 0.0, "repeated_4grams": 0.0, "length_ratio": pytest.approx(3 / 6),
                  "broken_characters": 0.0}
    broken = health_per_sample("头痛\ufffd多休息", "头痛", ran_out=True)
    assert broken["broken_characters"] == 1.0 and broken["ran_to_max_new_tokens"] == 1.0
    assert broken["length_ratio"] == pytest.approx(6 / 2)
    assert health_per_sample("多休息", "", ran_out=False)["length_ratio"] == 3.0  # no division by zero


def test_health_summary_is_total_length_over_total_reference_and_shares():
    rows = [{**health_per_sample(p, r, ran_out=o), "answer_chars": len(p), "reference_chars": len(r)}
            for p, r, o in [("头痛要多休息" * 20, "头痛要多休息", True), ("多休息", "头痛应多休息睡觉", False),
                            ("\ufffd", "发热", False), ("发热要就医", "发热要去医院", False)]]
    summary = health_summary(rows)
    assert summary["ran_to_max_new_tokens"] == 0.25 and summary["broken_characters"] == 0.25
    assert summary["repeated_4grams"] == pytest.approx((1 - 6 / 117) / 4)
    # (120 + 3 + 1 + 5) / (6 + 8 + 2 + 6), not the mean of the ratios.
    assert summary["length_ratio"] == pytest.approx(129 / 22)


# --- corpus metrics from statistics -----------------------------------------------------------

NLL_STATS = [[2.0, 1], [30.0, 10], [4.0, 4], [12.0, 3], [9.0, 2]]  # per answer: [summed NLL, tokens]


def test_nll_from_stats_is_total_nll_over_total_tokens():
    assert nll_from_stats([57.0, 20]) == pytest.approx(57 / 20)
    table = scores_matrix([[{"rouge-l": 0.0, "nll_stats": s} for s in NLL_STATS]])
    assert table["nll_stats"].shape == (1, 5, 2)
    # Total over total, not the mean of per-answer NLLs (2, 3, 1, 4, 4.5 -> 2.9).
    assert point_estimates(table)[NLL] == pytest.approx([57 / 20])
    assert np.mean([n / t for n, t in NLL_STATS]) != pytest.approx(57 / 20)


def test_resampled_nll_is_recomputed_from_the_drawn_answers():
    table = scores_matrix([[{"rouge-l": 0.0, "nll_stats": s} for s in NLL_STATS]])
    counts = bootstrap_indices(5, 50, seed=4)
    values = resampled(table, counts)[NLL]
    stats = np.asarray(NLL_STATS)
    for r in (0, 1, 17, 49):
        drawn = [i for i in range(5) for _ in range(int(counts[r, i]))]
        assert values[r] == pytest.approx(stats[drawn, 0].sum() / stats[drawn, 1].sum())
    assert len(set(np.round(values, 9))) > 5  # the resamples differ


# --- the bootstrap ----------------------------------------------------------------------------

GROUPS = ["g2", "g0", "g1", "g0", "g2", "g3", "g2", "g1", "g4"]  # members interleaved, sizes 3, 2, 2, 1, 1


def test_bootstrap_counts_draw_whole_groups():
    counts = bootstrap_counts(GROUPS, 200, seed=5)
    assert counts.shape == (200, len(GROUPS))
    names = sorted(set(GROUPS))
    members = {g: [i for i, x in enumerate(GROUPS) if x == g] for g in names}
    # Members of one group are always drawn together.
    for g, idx in members.items():
        assert (counts[:, idx] == counts[:, idx[:1]]).all(), g
    draws = np.stack([counts[:, members[g][0]] for g in names], axis=1)  # (resamples, groups)
    # As many groups drawn as there are, and each row counts the drawn groups' sizes.
    assert (draws.sum(axis=1) == len(names)).all()
    assert (counts.sum(axis=1) == draws @ np.asarray([len(members[g]) for g in names])).all()
    assert len(set(counts.sum(axis=1))) > 1  # big and small groups make resamples of varying size
    assert (bootstrap_counts(GROUPS, 200, seed=5) == counts).all()
    assert not (bootstrap_counts(GROUPS, 200, seed=6) == counts).all()


def test_bootstrap_indices_draw_single_questions_with_replacement():
    counts = bootstrap_indices(6, 500, seed=7)
    assert counts.shape == (500, 6) and (counts.sum(axis=1) == 6).all()
    assert (bootstrap_indices(6, 500, seed=7) == counts).all()
    assert counts.max() > 1 and (counts == 0).any()


def test_bootstrap_intervals_contain_the_score_and_the_identity_resample_gives_it_back():
    counts = bootstrap_indices(len(PREDS), 500, seed=7)
    intervals = bootstrap_intervals(PREDS, REFS, counts, 0.95)
    scores = {**rouge_zh(PREDS, REFS), "bleu": bleu_zh(PREDS, REFS)[0]}
    for key, score in scores.items():
        assert intervals[key]["low"] <= score <= intervals[key]["high"], key
    assert intervals["rouge-l"]["low"] < intervals["rouge-l"]["high"]
    # The interval of BLEU comes from summed sentence statistics: drawing every question once
    # (the identity resample) gives corpus BLEU itself.
    identity = bootstrap_intervals(PREDS, REFS, np.ones((3, 6)), 0.95)
    assert identity["bleu"]["low"] == pytest.approx(scores["bleu"]) == identity["bleu"]["high"]
    assert identity["rouge-l"]["low"] == pytest.approx(scores["rouge-l"])


def test_several_seeds_widen_the_interval_and_identical_seeds_do_not():
    good, bad = per_sample_scores(REFS, REFS), per_sample_scores(PREDS, REFS)
    questions = bootstrap_indices(6, 400, seed=3)
    one = resampled(scores_matrix([bad]), questions)
    same = resampled(scores_matrix([bad, bad]), questions, np.random.default_rng(0))
    assert np.allclose(one["rouge-l"], same["rouge-l"]) and np.allclose(one["bleu"], same["bleu"])
    # A seed that answers perfectly and one that does not: the seeds' spread widens the interval.
    mixed = resampled(scores_matrix([bad, good]), questions, np.random.default_rng(0))
    assert width(mixed["rouge-l"]) > 2 * width(one["rouge-l"])
    assert interval(mixed["rouge-l"], 0.95)["high"] == pytest.approx(100)  # both seeds drawn as the good one


def test_two_level_bootstrap_seeds_that_disagree_give_a_wider_interval_than_seeds_that_agree():
    # The same question-level scores (the seeds' mean per question is identical); one setup's two
    # seeds agree, the other's sit 10 points either side of it.
    base = np.random.default_rng(0).uniform(20, 80, size=40)
    rows = lambda values: [{"rouge-l": float(v), "nll_stats": [float(v) / 10, 5]} for v in values]  # noqa: E731
    agree = scores_matrix([rows(base), rows(base)])
    disagree = scores_matrix([rows(base + 10), rows(base - 10)])
    assert np.allclose(agree["rouge-l"].mean(axis=0), disagree["rouge-l"].mean(axis=0))
    counts = bootstrap_indices(40, 1000, seed=1)
    tight, loose = resampled(agree, counts, np.random.default_rng(2)), resampled(disagree, counts, np.random.default_rng(2))
    for key in ("rouge-l", NLL):
        assert width(loose[key]) > 1.5 * width(tight[key]), key
    # Each resample averages the seeds it draws: both drawn as the high seed lifts it by 10.
    assert np.isclose(loose["rouge-l"] - tight["rouge-l"], 10).any()
    assert np.isclose(loose["rouge-l"] - tight["rouge-l"], -10).any()
    assert set(np.round(loose["rouge-l"] - tight["rouge-l"], 6)) <= {-10.0, 0.0, 10.0}


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
