"""The test set as the web page shows it, as pure functions of what the pipeline wrote: each
question with its reference, every run's answer and that answer's own scores; the question two
runs disagree on most; and where a larger training set scored below a smaller one.

Rows are "long": one per test question and run, with columns id, run, answer, rouge-l, bleu
(the answer's sentence BLEU from its sacrebleu statistics) and char-bleu-4.
"""

from __future__ import annotations

import pandas as pd

from medqa_scale.evaluate.metrics import CHAR_BLEU, bleu_from_stats
from medqa_scale.core.params import REFERENCE_RUNS, parse_run, scale_size

SCORES = ("rouge-l", "bleu", CHAR_BLEU)


def answers_table(predictions: dict[str, list[dict] | None], scores: dict[str, list[dict] | None]) -> pd.DataFrame:
    """One row per question and run that has both an answer and its scores (runs given None are
    left out: they have not been evaluated yet)."""
    rows = []
    for run, answers in predictions.items():
        scored = {s["id"]: s for s in scores.get(run) or []}
        for a in answers or []:
            s = scored.get(a["id"])
            if s is not None:
                rows.append({"id": a["id"], "run": run, "answer": a["prediction"], "rouge-l": s["rouge-l"],
                             "bleu": bleu_from_stats(s["bleu_stats"]), CHAR_BLEU: s[CHAR_BLEU]})
    return pd.DataFrame(rows, columns=["id", "run", "answer", *SCORES])


def judgments_by_answer(lines: list[dict] | None) -> dict[tuple[str, str], list[dict]]:
    """The judge stage's lines (data/judge/judgments.jsonl) by (question id, run): each run's
    judgments against the answers it was compared with, in the stage's order."""
    out: dict[tuple[str, str], list[dict]] = {}
    for line in lines or []:
        out.setdefault((line["id"], line["run"]), []).append(line)
    return out


def judgment_text(line: dict) -> dict[str, str]:
    """One judgment as the page words it: the outcome, and what the judge said with the run's answer
    shown first and shown second (its preference, and its reason)."""
    def said(verdict: dict, run_is: str) -> str:
        v = verdict["verdict"]
        pick = ("unparseable reply" if v is None else "a tie" if v == "tie" else
                "this answer better" if v == run_is else "the other answer better")
        return pick + (f": {verdict['reason']}" if verdict.get("reason") else "")
    if line.get("identical"):
        return {"outcome": "tie", "first": "identical answers: not asked", "second": "identical answers: not asked"}
    return {"outcome": line["outcome"], "first": said(line["run_first"], "A"), "second": said(line["run_second"], "B")}


def item(answers: pd.DataFrame, question_id: str, runs: list[str]) -> pd.DataFrame:
    """One question's answers and scores, a row per run in `runs` order (a run without an answer
    to it is left out)."""
    rows = answers[answers.id == question_id].set_index("run")
    return rows.loc[[r for r in runs if r in rows.index]].reset_index()[["run", "answer", *SCORES]]


def largest_difference(answers: pd.DataFrame, run_a: str, run_b: str, metric: str = "rouge-l") -> str:
    """The question on which `run_a` and `run_b` differ most in `metric` (first in test order on ties)."""
    a = answers[answers.run == run_a].set_index("id")[metric]
    b = answers[answers.run == run_b].set_index("id")[metric]
    both = a.index.intersection(b.index, sort=False)
    if both.empty:
        raise ValueError(f"{run_a} and {run_b} have answered no question in common")
    return str((a[both] - b[both]).abs().idxmax())


def scale_losses(answers: pd.DataFrame, metric: str = "rouge-l") -> pd.DataFrame:
    """Each question where a run scored below the run of the same method and seed at the next
    smaller scale: id, the smaller and the larger run, and how much the larger one lost."""
    tuned = answers[~answers.run.isin(REFERENCE_RUNS)]
    if tuned.empty:
        return pd.DataFrame(columns=["id", "smaller", "larger", "loss"])
    parts = tuned.run.map(parse_run)
    tuned = tuned.assign(method=parts.str[0], n=parts.str[1].map(scale_size), seed=parts.str[2])
    found = []
    for _, group in tuned.groupby(["method", "seed"]):
        sizes = sorted(group.n.unique())
        for small, large in zip(sizes, sizes[1:]):
            s = group[group.n == small].set_index("id")
            b = group[group.n == large].set_index("id")
            both = s.index.intersection(b.index, sort=False)
            loss = s.loc[both, metric] - b.loc[both, metric]
            lost = loss[loss > 0]
            found.append(pd.DataFrame({"id": lost.index, "smaller": s.run.iloc[0], "larger": b.run.iloc[0],
                                       "loss": lost.to_numpy()}))
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=["id", "smaller", "larger", "loss"])


def filter_answers(answers: pd.DataFrame, questions: dict[str, str], *, runs: list[str] | None = None,
                   low: float = 0.0, high: float = 100.0, scale_lost: bool = False, sort_by: str = "rouge-l",
                   descending: bool = False) -> pd.DataFrame:
    """The answers table to browse: the chosen runs, `low` <= ROUGE-L <= `high`, and with
    `scale_lost` only the larger run of each pair where the larger scale lost, sorted by a score."""
    rows = answers[answers["rouge-l"].between(low, high)]
    if runs:
        rows = rows[rows.run.isin(runs)]
    if scale_lost:
        losses = scale_losses(answers)
        rows = rows.merge(losses.rename(columns={"larger": "run"})[["id", "run", "smaller", "loss"]], on=["id", "run"])
    rows = rows.sort_values([sort_by, "id", "run"], ascending=[not descending, True, True], kind="stable")
    rows.insert(1, "question", rows.id.map(questions))
    return rows.reset_index(drop=True)


def with_interval(table: pd.DataFrame, metrics: tuple[str, ...] = ("rouge-1", "rouge-2", "rouge-l", "bleu")) -> pd.DataFrame:
    """The results table (plots/results_summary.csv) as read: each metric `value [low, high]`."""
    shown = table[["run", "method", "n_train"]].copy()
    for m in metrics:
        shown[m] = [f"{v:.2f} [{lo:.2f}, {hi:.2f}]" for v, lo, hi in zip(table[m], table[f"{m}_low"], table[f"{m}_high"])]
    for cost in ("train_runtime_s", "train_peak_memory_mb", "samples_per_second"):
        if cost in table:
            shown[cost] = table[cost].round(1)
    return shown
