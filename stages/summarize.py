"""Stage summarize: the tables, figures and report that compare every setup with its reference.

Run:    dvc repro summarize         (or: python -m stages.summarize)
Reads:  metrics/{likelihood,evaluate,generate,train,benchmark}/<run>.json, data/likelihood/<run>.jsonl,
        data/benchmark/<run>.jsonl (per-item exam results) and
        data/scores/<run>.jsonl (per-answer NLL and scores), data/predictions/<run>.jsonl (example
        answers), dvclive/<run>/ for the runs that params methods x split.scales x train.seeds name
        (stale files from other params are ignored); with judge.enabled, data/judge/judgments.jsonl and
        metrics/judge.json (the judge's verdicts, stage judge); params seed, evaluate.bootstrap,
        benchmarks (sets and roles), report, judge.enabled
Writes: plots/results_summary.csv (one row per setup, a method at a scale, the references first:
        each metric's mean over seeds, its interval over question groups and seeds, the spread
        between seeds, generation health, and the mean cost)
        plots/results_by_run.csv (one row per trained model, each seed apart)
        plots/comparisons.csv (paired differences with intervals, p-values and Holm-adjusted ones; with
        the judge, each judged pair's win, tie and loss rates and win rate, Holm-adjusted with the rest)
        plots/scaling.csv (each method's gain per doubling and per step, primary metric and ROUGE-L)
        plots/loss_curves.csv (train and eval loss of each run against training samples seen)
        plots/report.md (what each step of data bought, verdict, tables, figures, example answers)
        plots/scaling.png, plots/data_scale_comparison.png, plots/method_comparison.png, plots/loss_curves.png
        metrics/summary.json (the verdict, for `dvc metrics diff` and `dvc exp show`: its keys in
        the table's order)
`dvc plots show` and `dvc plots diff` draw the CSVs as interactive charts (dvc.yaml's plots).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.core.durable import atomic_path, read_json, read_jsonl, remove_stale
from medqa_scale.core.params import BASE_RUN, REFERENCE_RUNS, load_params, run_name, scale_size, setup_name, source_name
from medqa_scale.evaluate.comparison import (adjust, check_same_questions, compare, compared_metrics, comparisons, setups,
                                             summary_row, verdict)
from medqa_scale.evaluate.knowledge import add_sets, retention_flags
from medqa_scale.evaluate.metrics import bootstrap_counts
from medqa_scale.evaluate.plots import caption, plot_loss_curves, plot_method_comparison, plot_scale_comparison, plot_scaling
from medqa_scale.evaluate.report import label_of, report_markdown
from medqa_scale.evaluate.scaling import scaling_fit
from medqa_scale.evaluate.summary import curves_table, loss_curves, runs_table, setups_table, summary
from medqa_scale.evaluate.win_rates import REFERENCE_OF, WIN_RATE, add_win_rates, judge_comparisons, judged_comparisons
from medqa_scale.evaluate.win_rates import row as judged_row
from medqa_scale.evaluate.win_rates import summary as judged_summary

log = logging.getLogger(__name__)

PLOTS = Path("plots")
TABLES = {name: PLOTS / f"{name}.csv" for name in ("results_summary", "results_by_run", "comparisons", "scaling", "loss_curves")}
REPORT, SUMMARY = PLOTS / "report.md", Path("metrics/summary.json")
FIGURES = {name: PLOTS / f"{name}.png" for name in ("scaling", "data_scale_comparison", "method_comparison", "loss_curves")}
JUDGMENTS, JUDGE_METRICS = Path("data/judge/judgments.jsonl"), Path("metrics/judge.json")
EXAMPLES = 3


def main() -> None:
    remove_stale(*TABLES.values(), REPORT, SUMMARY, *FIGURES.values())
    p = load_params()
    methods, scales, seeds, b, r = (p["methods"], [str(s) for s in p["split"]["scales"]], p["train"]["seeds"],
                                    p["evaluate"]["bootstrap"], p["report"])
    primary, confidence = r["primary_metric"], b["confidence"]
    runs = [(m, s, seed) for m in methods for s in scales for seed in seeds]
    by_run = runs_table(runs, Path("metrics"))
    scores = read_scores(runs)
    groups = [row["group"] for row in scores[BASE_RUN]]
    compared = setups(group_by_setup(scores, runs), groups, b["resamples"], p["seed"])
    sets = {source_name(s): s["role"] for s in p["benchmarks"]}
    set_metrics = add_sets(compared, group_by_setup(read_benchmark(runs), runs), list(sets), b["resamples"], p["seed"]) if sets else []
    judgments = read_judgments(methods, scales, seeds, groups, b["resamples"], p["seed"]) if p["judge"]["enabled"] else {}
    add_win_rates(compared, judgments)  # each setup's win rate against its reference: a metric like the others
    table = setups_table(by_run, {name: summary_row(s, confidence) for name, s in compared.items()})
    metrics = [k for k in compared_metrics(primary) if k != WIN_RATE] + set_metrics
    pairs = adjust([{**compare(compared[a], compared[c], metrics, confidence),  # the judge's head-to-head, where it judged
                     **(judged_row(judgments[(a, c)], confidence) if (a, c) in judgments else {})}
                    for a, c in comparisons(methods, scales, REFERENCE_OF)], metrics + [WIN_RATE] * bool(judgments), r["alpha"])
    reference_of = {setup_name(m, s): REFERENCE_OF[m] for m in methods for s in scales}
    cost = dict(zip(table.run, table.get("train_runtime_s", pd.Series(0.0, index=table.index))))
    choice, rouge_choice = (verdict(compared, pairs, reference_of, cost, metric=k, alpha=r["alpha"], margin=r["margin"][k])
                            for k in (primary, "rouge-l"))
    fitted = list(dict.fromkeys([primary, "rouge-l", *(f"acc-{s}" for s, role in sets.items() if role == "domain")]))
    fits = scaling(compared, table, methods, scales, fitted, confidence) if len(scales) > 1 else {}
    retention = [s for s, role in sets.items() if role == "retention"]
    knowledge = {"sets": sets, "flags": retention_flags(pairs, reference_of, retention, r["max_retention_drop"]),
                 "max_drop": r["max_retention_drop"], "alpha": r["alpha"]}
    tuned = by_run[~by_run.run.isin(REFERENCE_RUNS)]
    curves = loss_curves([(r, scale_size(s)) for r, s in zip(tuned.run, tuned.scale)], Path("dvclive"))
    for name, frame in (("results_summary", table), ("results_by_run", by_run), ("comparisons", pd.DataFrame(pairs)),
                        ("scaling", scaling_table(fits)), ("loss_curves", curves_table(curves))):
        with atomic_path(TABLES[name]) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.4f")
    produced_on = caption(tuned)
    judge = {**read_json(JUDGE_METRICS), **judged_summary([c for c in pairs if "judged_pairs" in c])} if judgments else None
    if fits:
        plot_scaling(fits, {k: f"{label_of(k)} ({'lower' if k == 'nll' else 'higher'} is better)" for k in fitted},
                     FIGURES["scaling"], produced_on)
    plot_scale_comparison(table, FIGURES["data_scale_comparison"])
    plot_method_comparison(table, FIGURES["method_comparison"])
    plot_loss_curves(curves, FIGURES["loss_curves"], produced_on)
    with atomic_path(REPORT) as tmp:
        tmp.write_text(report_markdown(table, pairs, choice, rouge_choice, fits, examples(methods, scales, seeds[0]),
                                       primary=primary, alpha=r["alpha"], margin=r["margin"], confidence=confidence,
                                       resamples=b["resamples"], n_test=len(groups), groups=len(set(groups)), seeds=seeds,
                                       produced_on=produced_on, knowledge=knowledge, judge=judge), encoding="utf-8")
    with atomic_path(SUMMARY) as tmp:  # keys unsorted: their order is `dvc exp show`'s column order
        tmp.write_text(json.dumps(summary(table, choice, rouge_choice, {**knowledge_summary(pairs, choice, knowledge),
                                                                        **judge_summary(table, choice, judge)}),
                                  indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log.info("most cost-effective by %s: %s (best: %s; by ROUGE-L: %s)\n%s", primary, choice["choice"], choice["best"],
             rouge_choice["choice"], table[["run", primary, f"{primary}_low", f"{primary}_high", "rouge-l", "bleu"]].to_string(index=False))


def scaling(compared: dict, table: pd.DataFrame, methods: list[str], scales: list[str], metrics: list[str],
            confidence: float) -> dict:
    """Each method's scaling_fit of each metric over the scales, with the mean training hours of each."""
    hours = dict(zip(table.run, table["train_runtime_s"] / 3600))
    sizes = [scale_size(s) for s in scales]
    return {m: {k: scaling_fit(sizes, [float(compared[setup_name(m, s)].values[k].mean()) for s in scales],
                               [compared[setup_name(m, s)].resamples[k] for s in scales],
                               [hours[setup_name(m, s)] for s in scales], confidence) for k in metrics} for m in methods}


def scaling_table(fits: dict) -> pd.DataFrame:
    """One row per method, metric and step (and one per doubling): gain, interval, p, hours."""
    rows = []
    for method, by_metric in fits.items():
        for metric, fit in by_metric.items():
            d = fit["per_doubling"]
            rows.append({"method": method, "metric": metric, "step": "per doubling", "gain": d["gain"], "low": d["low"],
                         "high": d["high"]})
            rows += [{"method": method, "metric": metric, "step": f"{s['from']}->{s['to']}", "gain": s["gain"], "low": s["low"],
                      "high": s["high"], "p": s["p"], "extra_hours": s["extra_hours"], "gain_per_hour": s["gain_per_hour"]}
                     for s in fit["steps"]]
    return pd.DataFrame(rows, columns=["method", "metric", "step", "gain", "low", "high", "p", "extra_hours", "gain_per_hour"])


def read_scores(runs: list[tuple[str, str, int]]) -> dict[str, list[dict]]:
    """Each run's per-answer scores joined with its per-answer NLL, in test order."""
    names = [*REFERENCE_RUNS, *(run_name(*r) for r in runs)]
    scores = {name: read_jsonl(Path("data/scores") / f"{name}.jsonl") for name in names}
    nll = {name: read_jsonl(Path("data/likelihood") / f"{name}.jsonl") for name in names}
    try:
        check_same_questions({**scores, **{f"{name} (likelihood)": rows for name, rows in nll.items()}})
    except ValueError as e:
        raise PipelineError(str(e)) from None
    return {name: [{**row, "nll_stats": n["nll_stats"]} for row, n in zip(scores[name], nll[name])] for name in names}


def read_judgments(methods: list[str], scales: list[str], seeds: list[int], groups: list[str], resamples: int,
                   seed: int) -> dict:
    """The judge's outcomes of each judged comparison (win_rates.judged), on the bootstrap every
    other metric uses (the same question groups and resamples)."""
    lines = read_jsonl(JUDGMENTS)
    try:
        return judge_comparisons(lines, judged_comparisons(methods, scales), seeds, bootstrap_counts(groups, resamples, seed), seed)
    except ValueError as e:
        raise PipelineError(f"{JUDGMENTS}: {e}") from None


def judge_summary(table: pd.DataFrame, choice: dict, judge: dict | None) -> dict:
    """For metrics/summary.json, with the judge on: the chosen setup's win rate against its
    reference and the judge's consistency (the share of pairs whose two orders agree)."""
    if judge is None:
        return {}
    pick = table.set_index("run")[WIN_RATE].get(choice["choice"]) if choice["choice"] else None
    return {"most_cost_effective_win_rate": None if pick is None else float(pick), "judge_consistency": judge["consistency"]}


def read_benchmark(runs: list[tuple[str, str, int]]) -> dict[str, list[dict]]:
    """Each run's per-item exam results (stage benchmark)."""
    names = [*REFERENCE_RUNS, *(run_name(*r) for r in runs)]
    missing = [n for n in names if not (Path("data/benchmark") / f"{n}.jsonl").exists()]
    if missing:
        raise PipelineError(f"data/benchmark/{missing[0]}.jsonl not found ({len(missing)} runs unscored): run `dvc repro benchmark`")
    return {name: read_jsonl(Path("data/benchmark") / f"{name}.jsonl") for name in names}


def knowledge_summary(pairs: list[dict], choice: dict, knowledge: dict) -> dict:
    """For metrics/summary.json: the chosen setup's accuracy change on each set against its
    reference, and whether it keeps general ability (no retention set down by more than the limit)."""
    pick = choice["choice"]
    if not knowledge["sets"]:
        return {}
    row = next((c for c in pairs if c["a"] == pick and c["b"] in REFERENCE_RUNS), None)
    out = {f"most_cost_effective_{s.replace('-', '_')}_change": None if row is None else float(row[f"acc-{s}_diff"])
           for s in knowledge["sets"]}
    retention = [s for s, role in knowledge["sets"].items() if role == "retention"]
    out["keeps_general_ability"] = None if pick is None or not retention else not knowledge["flags"].get(pick)
    out["retention_drop_clear"] = None if row is None or not retention else any(
        row[f"acc-{s}_p_holm"] < knowledge["alpha"] and row[f"acc-{s}_diff"] < 0 for s in retention)
    return out


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
