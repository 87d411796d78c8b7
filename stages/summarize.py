"""Stage summarize: the tables, figures and report that compare every setup with the base model.

Run:    dvc repro summarize         (or: python -m stages.summarize)
Reads:  metrics/{evaluate,generate,train}/<run>.json, data/scores/<run>.jsonl (per-answer scores),
        data/predictions/<run>.jsonl (example answers), dvclive/<run>/ for the runs that params
        methods x split.scales x train.seeds name (stale files from other params are ignored);
        params seed, evaluate.bootstrap
Writes: plots/results_summary.csv (one row per setup, a method at a scale, the references first:
        each metric's mean over seeds, its interval over questions and seeds, the spread between
        seeds, and the mean cost)
        plots/results_by_run.csv (one row per trained model, each seed apart)
        plots/comparisons.csv (paired differences with intervals and p-values)
        plots/loss_curves.csv (train and eval loss of each run against training samples seen)
        plots/report.md (verdict, tables, figures, example answers)
        plots/data_scale_comparison.png, plots/method_comparison.png, plots/loss_curves.png
        metrics/summary.json (best and most cost-effective setup, for `dvc metrics diff` and
        `dvc exp show`: its keys in the table's order)
`dvc plots show` and `dvc plots diff` draw the CSVs as interactive charts (dvc.yaml's plots).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.evaluate.comparison import check_same_questions, compare, comparisons, setups, summary_row, verdict
from medqa_scale.core.durable import atomic_path, read_jsonl, remove_stale
from medqa_scale.core.params import BASE_4BIT_RUN, BASE_RUN, REFERENCE_RUNS, load_params, run_name, scale_size, setup_name
from medqa_scale.evaluate.plots import caption, plot_loss_curves, plot_method_comparison, plot_scale_comparison
from medqa_scale.evaluate.report import report_markdown
from medqa_scale.evaluate.summary import curves_table, loss_curves, runs_table, setups_table, summary

log = logging.getLogger(__name__)

PLOTS = Path("plots")
TABLES = {name: PLOTS / f"{name}.csv" for name in ("results_summary", "results_by_run", "comparisons", "loss_curves")}
REPORT, SUMMARY = PLOTS / "report.md", Path("metrics/summary.json")
FIGURES = {name: PLOTS / f"{name}.png" for name in ("data_scale_comparison", "method_comparison", "loss_curves")}
REFERENCE_OF = {"lora": BASE_RUN, "qlora": BASE_4BIT_RUN}  # what each method's adapter is trained on
EXAMPLES = 3


def main() -> None:
    remove_stale(*TABLES.values(), REPORT, SUMMARY, *FIGURES.values())
    p = load_params()
    methods, scales, seeds, b = p["methods"], [str(s) for s in p["split"]["scales"]], p["train"]["seeds"], p["evaluate"]["bootstrap"]
    runs = [(m, s, seed) for m in methods for s in scales for seed in seeds]
    by_run = runs_table(runs, Path("metrics"))
    scores = read_scores(runs)
    compared = setups(group_by_setup(scores, runs), b["resamples"], p["seed"])
    table = setups_table(by_run, {name: summary_row(s, b["confidence"]) for name, s in compared.items()})
    pairs = [compare(compared[a], compared[c], b["confidence"]) for a, c in comparisons(methods, scales, REFERENCE_OF)]
    choice = verdict(table[~table.run.isin(REFERENCE_RUNS)].to_dict("records"))
    tuned = by_run[~by_run.run.isin(REFERENCE_RUNS)]
    curves = loss_curves([(r, scale_size(s)) for r, s in zip(tuned.run, tuned.scale)], Path("dvclive"))
    for name, frame in (("results_summary", table), ("results_by_run", by_run), ("comparisons", pd.DataFrame(pairs)),
                        ("loss_curves", curves_table(curves))):
        with atomic_path(TABLES[name]) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.4f")
    plot_scale_comparison(table, FIGURES["data_scale_comparison"])
    plot_method_comparison(table, FIGURES["method_comparison"])
    plot_loss_curves(curves, FIGURES["loss_curves"], caption(tuned))
    with atomic_path(REPORT) as tmp:
        tmp.write_text(report_markdown(table, pairs, choice, examples(methods, scales, seeds[0]), confidence=b["confidence"],
                                       resamples=b["resamples"], n_test=int(by_run.n_test.iloc[0]),
                                       seeds=seeds, produced_on=caption(tuned)), encoding="utf-8")
    with atomic_path(SUMMARY) as tmp:  # keys unsorted: their order is `dvc exp show`'s column order
        tmp.write_text(json.dumps(summary(table, choice), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log.info("most cost-effective: %s (best: %s)\n%s", choice["choice"], choice["best"],
             table[["run", "rouge-l", "rouge-l_low", "rouge-l_high", "bleu", "train_runtime_s"]].to_string(index=False))


def read_scores(runs: list[tuple[str, str, int]]) -> dict[str, list[dict]]:
    names = [*REFERENCE_RUNS, *(run_name(*r) for r in runs)]
    scores = {name: read_jsonl(Path("data/scores") / f"{name}.jsonl") for name in names}
    try:
        check_same_questions(scores)
    except ValueError as e:
        raise PipelineError(str(e)) from None
    return scores


def group_by_setup(scores: dict[str, list[dict]], runs: list[tuple[str, str, int]]) -> dict[str, list[list[dict]]]:
    """The references with their one answer set; each setup with one per seed, in train.seeds order."""
    grouped = {ref: [scores[ref]] for ref in REFERENCE_RUNS}
    for method, scale, seed in runs:
        grouped.setdefault(setup_name(method, scale), []).append(scores[run_name(method, scale, seed)])
    return grouped


def examples(methods: list[str], scales: list[str], seed: int) -> list[dict]:
    """The first test questions (the split is shuffled), answered by the base model and by each
    method at the largest scale (first seed)."""
    runs = [BASE_RUN, *(run_name(m, scales[-1], seed) for m in methods)]
    answers = {r: read_jsonl(Path("data/predictions") / f"{r}.jsonl")[:EXAMPLES] for r in runs}
    return [{"question": row["question"], "reference": row["reference"],
             "answers": {r: answers[r][i]["prediction"] for r in runs}} for i, row in enumerate(answers[BASE_RUN])]


if __name__ == "__main__":
    run(main)
