"""The multiple-choice scorer (medqa_scale.evaluate.exam_scoring): candidates, prompts, lm-eval's
tokenization of context and continuation, log-likelihoods with shared prefixes, and the accuracy
of a model on the built-in sets equal to lm-evaluation-harness's on the same items and prompts.

Run: python -m pytest tests/test_exam_scoring.py -q
"""

from __future__ import annotations

import json

import pytest

from medqa_scale.builtin.exams import domain_items, retention_items
from medqa_scale.evaluate.exam_scoring import (accuracy_summary, candidates, context_text, encode_pair, loglikelihoods,
                                               score_items, user_text)

SYSTEM = "你是一名医学助手。"
ITEM = {"id": "x:1", "question": "高血压一般在哪个科室诊治？", "options": {"A": "骨科", "B": "心血管内科", "C": "眼科"}, "answer": ["B"]}


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_base).eval(), AutoTokenizer.from_pretrained(tiny_base)


def test_letter_scoring_lists_the_options_and_scores_the_letters():
    assert user_text(ITEM, "letter") == "高血压一般在哪个科室诊治？\nA. 骨科\nB. 心血管内科\nC. 眼科\n答案："
    assert user_text(ITEM, "option_text") == ITEM["question"]
    assert candidates(ITEM, "letter") == ["A", "B", "C"]
    assert candidates(ITEM, "option_text") == ["骨科", "心血管内科", "眼科"]
    several = {**ITEM, "answer": ["A", "C"]}
    assert candidates(several, "letter") == ["A", "B", "C", "AB", "AC", "BC", "ABC"]


def test_the_prompt_is_the_chat_template_with_shots_as_earlier_turns(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    shot = {**ITEM, "question": "感冒看什么科？", "options": {"A": "呼吸内科", "B": "骨科"}, "answer": ["A"]}
    text = context_text(tokenizer, ITEM, scoring="letter", system_prompt=SYSTEM, shots=[shot])
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>")
    assert "感冒看什么科？\nA. 呼吸内科\nB. 骨科\n答案：<|im_end|>\n<|im_start|>assistant\nA<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_the_contexts_trailing_newline_moves_to_the_continuation_as_lm_eval_does(model_and_tokenizer):
    _, tokenizer = model_and_tokenizer
    context = context_text(tokenizer, ITEM, scoring="option_text", system_prompt=SYSTEM, shots=[])
    context_ids, continuation_ids = encode_pair(tokenizer, context, "心血管内科")
    assert context_ids == tokenizer(context.rstrip(), add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(continuation_ids) == "\n心血管内科"


def test_shared_prefixes_give_the_log_likelihoods_of_one_pass_per_pair(model_and_tokenizer):
    import torch

    model, tokenizer = model_and_tokenizer
    pairs = []
    for item in domain_items(0)[:6]:
        for scoring in ("letter", "option_text"):
            context = context_text(tokenizer, item, scoring=scoring, system_prompt=SYSTEM, shots=[])
            pairs += [encode_pair(tokenizer, context, c) for c in candidates(item, scoring)]
    fast = loglikelihoods(model, pairs, batch_size=7, pad_id=tokenizer.pad_token_id)
    for (context, continuation), value in zip(pairs, fast):
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(input_ids=torch.tensor([context + continuation])).logits[0].float(), -1)
        one = sum(float(logprobs[len(context) - 1 + i, t]) for i, t in enumerate(continuation))
        assert abs(value - one) < 1e-4


@pytest.mark.slow  # loads lm-eval and runs its evaluator: a cross-check, out of the fast tier
@pytest.mark.parametrize("scoring, metric", [("letter", "acc"), ("option_text", "acc_norm")])
def test_accuracy_equals_lm_evaluation_harness_on_the_same_items_and_prompts(model_and_tokenizer, tmp_path, monkeypatch, scoring, metric):
    # lm-eval 0.4.13's multiple_choice task fed the same chat-templated prompts and candidates, with
    # its HFLM around the same loaded model: every item's log-likelihoods, choice and the accuracy
    # must agree (acc_norm divides by the candidate's length in characters, as option_text does).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    model, tokenizer = model_and_tokenizer
    items = domain_items(7)[:24] + retention_items(7)[:16]
    ours = score_items(model, tokenizer, items, scoring=scoring, system_prompt=SYSTEM, shots=[], batch_size=16)
    docs = tmp_path / "docs.jsonl"
    with docs.open("w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps({"prompt": context_text(tokenizer, item, scoring=scoring, system_prompt=SYSTEM, shots=[]),
                                "choices": candidates(item, scoring), "label": list(item["options"]).index(item["answer"][0])},
                               ensure_ascii=False) + "\n")
    task = {"task": "medqa_exam", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(docs)}},
            "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "prompt", "doc_to_choice": "choices",
            "doc_to_target": "label", "target_delimiter": "", "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}
    result = simple_evaluate(model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=16), tasks=[task],
                             task_manager=TaskManager(include_defaults=False), num_fewshot=0, log_samples=True, bootstrap_iters=0)
    samples = sorted(result["samples"]["medqa_exam"], key=lambda s: s["doc_id"])
    for item, mine, theirs in zip(items, ours, samples):
        lls = [float(r[0][0]) for r in theirs["resps"]]
        assert [round(x, 3) for x in mine["scores"].values()] == pytest.approx([round(x, 3) for x in lls], abs=2e-3), item["id"]
        assert mine["correct"] == bool(theirs[metric]), item["id"]
    accuracy = sum(r["correct"] for r in ours) / len(ours)
    assert accuracy == pytest.approx(result["results"]["medqa_exam"][f"{metric},none"], abs=1e-9)


def test_an_accuracy_interval_is_seeded_paired_and_holds_the_accuracy():
    correct = [True] * 30 + [False] * 70
    a = accuracy_summary(correct, resamples=1000, seed=3, confidence=0.95)
    assert a["accuracy"] == 30.0 and a["n"] == 100
    assert a["interval"]["accuracy"]["low"] < 30.0 < a["interval"]["accuracy"]["high"]
    assert a == accuracy_summary(correct, resamples=1000, seed=3, confidence=0.95)
    assert a != accuracy_summary(correct, resamples=1000, seed=4, confidence=0.95)
    assert 18 < a["interval"]["accuracy"]["low"] < 24 and 36 < a["interval"]["accuracy"]["high"] < 42  # ±1.96 x 4.6 points

