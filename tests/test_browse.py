"""medqa_scale.serve.browse: the web page's test-set views as pure functions of predictions and scores.

Run: python -m pytest tests/test_browse.py -q
"""

from __future__ import annotations

import pandas as pd
import pytest

from medqa_scale.core.params import runs_of
from medqa_scale.serve.browse import (answers_table, filter_answers, item, judgment_text, judgments_by_answer, largest_difference,
                                     scale_losses, with_interval)
from medqa_scale.evaluate.metrics import bleu_from_stats, per_sample_scores

REFERENCES = {"q1": "多喝水，注意休息。", "q2": "建议到消化内科就诊。", "q3": "按时服用降压药。"}
QUESTIONS = {"q1": "感冒了怎么办？", "q2": "胃痛怎么办？", "q3": "高血压吃什么药？"}
ANSWERS = {  # each run's answer to q1, q2, q3
    "base": ["多喝热水。", "多喝热水。", "多喝热水。"],
    "lora-1k-42": ["多喝水，注意休息。", "建议就诊。", "按时服用降压药。"],
    "lora-2k-42": ["多喝水。", "建议到消化内科就诊。", "按时服用降压药。"],
}


def scored(run: str) -> tuple[list[dict], list[dict]]:
    ids = list(REFERENCES)
    predictions = [{"id": i, "prediction": a} for i, a in zip(ids, ANSWERS[run])]
    scores = [{"id": i, **s} for i, s in zip(ids, per_sample_scores(ANSWERS[run], [REFERENCES[i] for i in ids]))]
    return predictions, scores


@pytest.fixture(scope="module")
def answers() -> pd.DataFrame:
    pairs = {run: scored(run) for run in ANSWERS}
    return answers_table({r: p for r, (p, _) in pairs.items()}, {r: s for r, (_, s) in pairs.items()})


def test_runs_of_params_lists_the_references_then_every_method_scale_and_seed():
    params = {"methods": ["lora", "qlora"], "split": {"scales": ["1k", "2k"]}, "train": {"seeds": [42, 7]}}
    assert runs_of(params["methods"], params["split"]["scales"], params["train"]["seeds"]) == ["base", "base-4bit", "lora-1k-42", "lora-1k-7", "lora-2k-42", "lora-2k-7",
                               "qlora-1k-42", "qlora-1k-7", "qlora-2k-42", "qlora-2k-7"]


def test_the_answers_table_has_a_row_per_question_and_run_with_the_answer_own_scores(answers):
    assert len(answers) == 9 and list(answers.columns) == ["id", "run", "answer", "rouge-l", "bleu", "char-bleu-4"]
    exact = answers[(answers.run == "lora-1k-42") & (answers.id == "q1")].iloc[0]
    assert exact.answer == "多喝水，注意休息。" and exact["rouge-l"] == pytest.approx(100)
    _, scores = scored("base")
    assert answers[answers.run == "base"].bleu.tolist() == [bleu_from_stats(s["bleu_stats"]) for s in scores]


def test_a_run_without_answers_or_scores_is_left_out_of_the_table():
    predictions, scores = scored("base")
    table = answers_table({"base": predictions, "lora-1k-42": None, "lora-2k-42": scored("lora-2k-42")[0]},
                          {"base": scores, "lora-1k-42": None, "lora-2k-42": None})
    assert set(table.run) == {"base"} and len(table) == 3


def test_an_item_lists_each_run_answer_in_the_given_order(answers):
    shown = item(answers, "q2", ["lora-2k-42", "base", "lora-1k-42", "qlora-1k-42"])
    assert shown.run.tolist() == ["lora-2k-42", "base", "lora-1k-42"]  # a run without an answer is left out
    assert shown.answer.tolist() == ["建议到消化内科就诊。", "多喝热水。", "建议就诊。"]


def test_largest_difference_picks_the_question_two_runs_disagree_on_most(answers):
    a = answers[answers.run == "lora-1k-42"].set_index("id")["rouge-l"]
    b = answers[answers.run == "lora-2k-42"].set_index("id")["rouge-l"]
    expected = (a - b).abs().idxmax()
    assert largest_difference(answers, "lora-1k-42", "lora-2k-42") == expected
    assert expected in ("q1", "q2") and (a - b).abs()["q3"] == 0  # q3 is answered alike
    with pytest.raises(ValueError, match="no question in common"):
        largest_difference(answers, "base", "qlora-1k-42")


def test_scale_losses_are_the_questions_where_the_larger_scale_scored_lower(answers):
    losses = scale_losses(answers)
    assert losses.id.tolist() == ["q1"]  # lora-2k-42 lost on q1 only; gained on q2
    row = losses.iloc[0]
    assert (row.smaller, row.larger) == ("lora-1k-42", "lora-2k-42")
    s = answers.set_index(["id", "run"])["rouge-l"]
    assert row.loss == pytest.approx(s["q1", "lora-1k-42"] - s["q1", "lora-2k-42"]) and row.loss > 0


def test_scale_losses_compare_runs_of_the_same_seed_only():
    rows = [{"id": "q", "run": r, "answer": "", "rouge-l": v, "bleu": 0, "char-bleu-4": 0}
            for r, v in [("lora-1k-1", 50), ("lora-2k-1", 40), ("lora-1k-2", 10), ("lora-2k-2", 30)]]
    losses = scale_losses(pd.DataFrame(rows))
    assert losses[["smaller", "larger"]].values.tolist() == [["lora-1k-1", "lora-2k-1"]]


def test_filters_by_run_and_score_and_sorts(answers):
    rows = filter_answers(answers, QUESTIONS, runs=["base", "lora-2k-42"], low=0, high=99, sort_by="rouge-l",
                          descending=True)
    assert set(rows.run) <= {"base", "lora-2k-42"} and (rows["rouge-l"] <= 99).all()
    assert rows["rouge-l"].is_monotonic_decreasing and rows.question.tolist() == [QUESTIONS[i] for i in rows.id]
    assert len(filter_answers(answers, QUESTIONS)) == 9


def test_the_scale_lost_filter_keeps_the_larger_run_answers_that_lost(answers):
    rows = filter_answers(answers, QUESTIONS, scale_lost=True)
    assert rows[["id", "run", "smaller"]].values.tolist() == [["q1", "lora-2k-42", "lora-1k-42"]]


def test_the_results_table_shows_each_metric_with_its_interval():
    table = pd.DataFrame([{"run": "lora-1k", "method": "lora", "n_train": 1000, "train_runtime_s": 12.345,
                           **{m: 10.0 + i for i, m in enumerate(("rouge-1", "rouge-2", "rouge-l", "bleu"))},
                           **{f"{m}_low": 9.0 for m in ("rouge-1", "rouge-2", "rouge-l", "bleu")},
                           **{f"{m}_high": 14.5 for m in ("rouge-1", "rouge-2", "rouge-l", "bleu")}}])
    shown = with_interval(table)
    assert shown["rouge-l"].iloc[0] == "12.00 [9.00, 14.50]" and shown.train_runtime_s.iloc[0] == 12.3


def test_each_answer_gets_its_judgments_worded_from_its_own_side():
    lines = [{"id": "q1", "run": "lora-1k-42", "against": "base", "outcome": "win", "identical": False,
              "run_first": {"verdict": "A", "reason": "更准确"}, "run_second": {"verdict": "B", "reason": "更安全"}},
             {"id": "q1", "run": "lora-2k-42", "against": "lora-1k-42", "outcome": "tie", "identical": False,
              "run_first": {"verdict": "B", "reason": None}, "run_second": {"verdict": None, "reason": None}},
             {"id": "q2", "run": "lora-1k-42", "against": "base", "outcome": "tie", "identical": True,
              "run_first": {"verdict": "tie", "reason": None}, "run_second": {"verdict": "tie", "reason": None}}]
    by = judgments_by_answer(lines)
    assert list(by) == [("q1", "lora-1k-42"), ("q1", "lora-2k-42"), ("q2", "lora-1k-42")] and judgments_by_answer(None) == {}
    assert judgment_text(lines[0]) == {"outcome": "win", "first": "this answer better: 更准确", "second": "this answer better: 更安全"}
    assert judgment_text(lines[1]) == {"outcome": "tie", "first": "the other answer better", "second": "unparseable reply"}
    assert judgment_text(lines[2])["first"] == "identical answers: not asked"
