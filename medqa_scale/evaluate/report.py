"""plots/report.md: the page that answers the study's question, as a pure function of the tables.

It opens with what each step of data bought, then the verdict by the rule fixed in params. Every
number carries its interval; a difference is called only where the Holm-adjusted paired p-value
is below alpha; the page states the rule, the family it corrects over and what the intervals cover.
"""

from __future__ import annotations

import pandas as pd

from medqa_scale.core.params import BASE_4BIT_RUN, BASE_RUN, REFERENCE_RUNS

METRIC_LABELS = {"nll": "answer NLL/token", "rouge-1": "ROUGE-1", "rouge-2": "ROUGE-2", "rouge-l": "ROUGE-L",
                 "bleu": "BLEU", "char-bleu-4": "char-BLEU-4", "lf-rouge-l": "ROUGE-L (LLaMA-Factory)",
                 "win-rate": "judge win rate vs reference"}
PRIMARY_ABOUT = {  # what the verdict's metric measures, for the page's opening
    "nll": "the reference answer's negative log-likelihood per answer token under each model, teacher-forced, counted "
           "as the training loss counts it. It measures the model, not the decoder, so a repetition loop or a stopping "
           "decision does not move it",
    "win-rate": "the share of test questions on which the judge prefers the setup's answer to its reference's, in both "
                "orders, a tie counting half (50 = no preference; see the judge's section)",
}
MEMORY_LABELS = {"cuda_max_allocated": "peak GPU memory (MB, CUDA max allocated)",
                 "cpu_rss_growth_over_loaded_model": "memory growth over the loaded model (MB, CPU RSS)"}


def label_of(metric: str) -> str:
    """A metric's name on the page; a benchmark set's accuracy is `acc-<set>`."""
    return METRIC_LABELS.get(metric) or f"{metric[4:]} accuracy"


def _cell(text: str, limit: int = 160) -> str:
    """One Markdown table cell: no pipes or line breaks, long answers cut with an ellipsis."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _digits(metric: str) -> int:
    return 4 if metric == "nll" else 2


def _with_interval(row, k: str) -> str:
    d = _digits(k)
    spread = f" ± {row[f'{k}_seed_sd']:.{d}f}" if row.get("seeds", 1) > 1 else ""
    return f"{row[k]:.{d}f}{spread} [{row[f'{k}_low']:.{d}f}, {row[f'{k}_high']:.{d}f}]"


def _diff(value: float, low: float, high: float, metric: str) -> str:
    d = _digits(metric)
    return f"{value:+.{d}f} [{low:+.{d}f}, {high:+.{d}f}]"


def _p(p: float, floor: float) -> str:
    return f"≤ {floor:.4f}" if p <= floor else f"{p:.4f}" if p < 0.01 else f"{p:.3f}"


def _better(metric: str) -> str:
    return "lower is better" if metric == "nll" else "higher is better"


def report_markdown(setups: pd.DataFrame, comparisons: list[dict], choice: dict, rouge_choice: dict, fits: dict,
                    examples: list[dict], *, primary: str, alpha: float, margin: dict, confidence: float, resamples: int,
                    n_test: int, groups: int, seeds: list[int], produced_on: str, knowledge: dict | None = None,
                    judge: dict | None = None) -> str:
    """The report: what each step of data bought, the verdict, results with intervals, generation
    health, comparisons with Holm-adjusted p-values, costs, and example answers side by side.
    `fits[method][metric]` are medqa_scale.evaluate.scaling.scaling_fit results; `judge` (the
    judge stage's metrics with its consistency over all judged pairs) adds the judge's section."""
    rows = setups.to_dict("records")  # dicts: metric names such as rouge-l are not attribute names
    tuned = [r for r in rows if r["run"] not in REFERENCE_RUNS]
    by_run = {r["run"]: r for r in rows}
    level, label = f"{confidence:.0%}", METRIC_LABELS[primary]
    floor = 1 / (resamples + 1)
    compared = [k for k in dict.fromkeys([primary, "rouge-l", "bleu"]) if k != "win-rate"]  # the judge's: its own table
    knowledge = knowledge or {"sets": {}, "flags": {}, "max_drop": 0.0, "alpha": alpha}
    set_metrics = [f"acc-{s}" for s in knowledge["sets"]]
    family = sum(f"{k}_p_holm" in c for c in comparisons for k in [*compared, *set_metrics, "win-rate"])
    out = [
        "# What fine-tuning data is worth: results",
        "",
        f"Produced on {produced_on}. {n_test} test questions in {groups} groups (a group's questions share one answer "
        f"and are held out together); {len(seeds)} training seed(s) per setup ({', '.join(map(str, seeds))}). "
        f"Intervals are {level} percentile intervals of a bootstrap with {resamples} resamples of the question groups"
        + (" and, within each setup, of its seeds (two levels), so they hold the spread between training runs"
           if len(seeds) > 1 else "") + ".",
        "",
    ]
    if len(seeds) == 1:
        out += ["**One seed per setup.** The intervals cover the test questions only. A difference between methods "
                "or scales is a difference between two single training runs; how much another seed would move it is "
                "not in any interval or p-value here. `-S strategy=thorough` trains 3 seeds per setup.", ""]
    out += [
        f"The primary metric is **{label}** ({_better(primary)})"
        + (f": {PRIMARY_ABOUT[primary]}. " if primary in PRIMARY_ABOUT else ". ") + "ROUGE is jieba-word F1 x100 "
        "counting every n-gram occurrence, punctuation left out; BLEU is sacrebleu's corpus BLEU (tokenize zh); "
        "LLaMA-Factory's ROUGE and char-BLEU-4 are in results_summary.csv for comparison with papers.",
        "",
        "## What each step of data bought",
        "",
        "![Scaling](scaling.png)",
        "",
    ]
    for method, by_metric in fits.items():
        for metric, fit in by_metric.items():
            g = fit["per_doubling"]
            out.append(f"- `{method}`, {label_of(metric)}: {_diff(g['gain'], g['low'], g['high'], metric)} per "
                       f"doubling of the training set ({_better(metric)}).")
            sat = fit.get("saturating")
            if sat and sat.get("next_doubling"):
                n = sat["next_doubling"]
                out.append(f"  Saturating fit ({sat['form']}): the next doubling would give "
                           f"{_diff(n['gain'], n['low'], n['high'], metric)}, an extrapolation beyond the data.")
    out += ["", _table(["method", "step", f"Δ {label} [interval]", "p", "Δ ROUGE-L [interval]", "p",
                        "extra training (h)", f"Δ {label} per hour"],
                       [[f"`{m}`", f"{a['from']} → {a['to']}", _diff(a["gain"], a["low"], a["high"], primary), _p(a["p"], floor),
                         _diff(b["gain"], b["low"], b["high"], "rouge-l"), _p(b["p"], floor), f"{a['extra_hours']:.4f}",
                         "–" if a["gain_per_hour"] is None else f"{a['gain_per_hour']:+.3f}"]
                        for m, f in fits.items() for a, b in zip(f[primary]["steps"], f["rouge-l"]["steps"])]),
            "", "Step p-values are paired and unadjusted; the comparisons below adjust the same steps for multiplicity. "
            "Hours are training time on the recorded hardware.", ""]
    out += ["## Verdict", ""]
    if choice["choice"] is None:
        out += ["**No setup qualifies, so no setup is recommended.** None beat its own reference on "
                f"{label} at the Holm-adjusted level."]
    else:
        pick, best = by_run[choice["choice"]], by_run[choice["best"]]
        out += [f"**Most cost-effective: `{pick['run']}`** ({label} {_with_interval(pick, primary)}, "
                f"{pick['train_runtime_s']:.0f} s of training). The best qualifying setup is `{best['run']}` "
                f"({_with_interval(best, primary)}). Qualifying: {', '.join(f'`{s}`' for s in choice['qualifying'])}; "
                f"within δ of the best: {', '.join(f'`{s}`' for s in choice['within_margin'])}."]
    out += ["", f"Rule (params `report`, fixed before the numbers): {choice['rule']}. α = {alpha:g} is family-wise: "
            f"Holm's correction runs over all {family} p-values of the comparisons table"
            + (f" ({len(comparisons)} pairs x {len(compared) + len(set_metrics)} metrics)" if judge is None else
               f" ({len(comparisons)} pairs x {len(compared) + len(set_metrics)} metrics, and the judge's win rate in the "
               f"{sum('win-rate_p_holm' in c for c in comparisons)} pairs it judged)") + f". p-values resolve to 1/(resamples + 1) = {floor:.5f}. "
            f"Margins δ: {', '.join(f'{k} {v:g}' for k, v in margin.items() if judge is not None or k != 'win-rate')}.", ""]
    if rouge_choice["choice"] == choice["choice"]:
        out += [f"A verdict by the same rule on ROUGE-L agrees (`{rouge_choice['choice']}`).", ""]
    else:
        out += [f"A verdict by the same rule on ROUGE-L would differ: "
                + (f"`{rouge_choice['choice']}`." if rouge_choice["choice"] else "no setup qualifies on ROUGE-L.")
                + " ROUGE-L follows the decoder as well as the model (see generation health).", ""]
    if set_metrics:
        out += _knowledge_section(rows, comparisons, choice, knowledge, floor)
    if judge is not None:
        out += _judge_section(comparisons, judge, primary, floor, level)
    metric_cols = [k for k in METRIC_LABELS if k in setups]
    out += ["## Results", "",
            _table(["setup", "training samples", *(METRIC_LABELS[k] for k in metric_cols), "perplexity"],
                   [[f"`{r['run']}`", r["n_train"], *(_with_interval(r, k) for k in metric_cols), f"{r['perplexity']:.2f}"]
                    for r in rows]),
            "",
            f"`{BASE_RUN}` is the base model without an adapter; `{BASE_4BIT_RUN}` is the same model loaded 4-bit (NF4) as "
            "QLoRA trains on it, so that QLoRA's gain is measured against the model it trains."
            + (" Values are means over seeds ± their standard deviation." if len(seeds) > 1 else ""),
            "",
            "## Generation health", "",
            "What the generation metrics rest on: answers that ran to max_new_tokens instead of ending, the mean share "
            "of repeated character 4-grams in an answer (loops), answer length over reference length, and answers "
            "holding broken characters (U+FFFD). Where these differ between setups, so may ROUGE, for reasons other "
            "than what the model knows.",
            "",
            _table(["setup", "ran to max_new_tokens", "repeated 4-grams", "length / reference", "broken characters"],
                   [[f"`{r['run']}`", f"{r['ran_to_max_new_tokens']:.1%}", f"{r['repeated_4grams']:.1%}",
                     f"{r['length_ratio']:.2f}", f"{r['broken_characters']:.1%}"] for r in rows]),
            "",
            "## Comparisons", "",
            f"Paired bootstrap on the same resampled question groups: the difference (first minus second), its {level} "
            "interval, and the two-sided p-value Holm-adjusted over the whole table. The reading follows the adjusted "
            f"p-value of {label}: below α it names the better setup, otherwise \"no clear difference\".",
            "",
            _table(["first", "second", *(f"Δ {METRIC_LABELS[k]} [interval]" for k in compared), *(f"p ({METRIC_LABELS[k]}, Holm)" for k in compared),
                    "reading"],
                   [[f"`{c['a']}`", f"`{c['b']}`",
                     *(_diff(c[f"{k}_diff"], c[f"{k}_diff_low"], c[f"{k}_diff_high"], k) for k in compared),
                     *(_p(c[f"{k}_p_holm"], floor) for k in compared), c.get(f"{primary}_reading", "not judged")]
                    for c in comparisons]),
            "",
            "![LoRA against QLoRA](method_comparison.png)",
            "",
            "## Cost", "",
            _table(["setup", "training time (s)", "training tokens/s",
                    MEMORY_LABELS.get(tuned[0]["train_peak_memory_kind"], "peak memory (MB)"),
                    "answers/s", "generated tokens/s", "best eval loss"],
                   [[f"`{r['run']}`", f"{r['train_runtime_s']:.1f}", f"{r['train_tokens_per_second']:.0f}",
                     f"{r['train_peak_memory_mb']:.0f}", f"{r['samples_per_second']:.1f}", f"{r['tokens_per_second']:.0f}",
                     f"{r['best_eval_loss']:.4f}"] for r in tuned]),
            "",
            "Training time counts optimizer steps only (evaluation and checkpoint saving are apart, in "
            "metrics/train/). Answers/s is batched greedy generation; LoRA adapters are merged into the base for it, "
            "QLoRA adapters run unmerged on the 4-bit base.",
            "",
            "![Data scale](data_scale_comparison.png)",
            "",
            "![Training curves](loss_curves.png)",
            "",
            "## Example answers",
            ""]
    for i, ex in enumerate(examples, 1):
        out += [f"**{i}. {_cell(ex['question'], 300)}**", "",
                _table(["", "answer"], [["reference", _cell(ex["reference"])]] +
                       [[f"`{run}`", _cell(answer)] for run, answer in ex["answers"].items()]), ""]
    return "\n".join(out).rstrip() + "\n"


def _knowledge_section(rows: list[dict], comparisons: list[dict], choice: dict, knowledge: dict, floor: float) -> list[str]:
    """Exam accuracy of every setup on each multiple-choice set, its change against the setup's own
    reference (paired, Holm-adjusted with the rest), and the retention check of the verdict."""
    sets, flags, max_drop = knowledge["sets"], knowledge["flags"], knowledge["max_drop"]
    retention = [s for s, role in sets.items() if role == "retention"]
    by_pair = {c["a"]: c for c in comparisons if c["b"] in REFERENCE_RUNS}
    out = ["## Knowledge and retention", "",
           "Multiple-choice exams scored by log-likelihood, no generation: "
           + "; ".join(f"`{s}` ({'medical knowledge' if role == 'domain' else 'general ability: retention'})"
                       for s, role in sets.items())
           + ". Each change is against the setup's own reference (LoRA: base, QLoRA: base-4bit), paired on the same "
           "items, its p-value Holm-adjusted with the comparisons table."
           + (f" A setup is flagged (⚠) when a retention set falls by more than {max_drop:g} points." if retention else ""), ""]
    pick = choice.get("choice")
    if pick and retention:
        lost = flags.get(pick, [])
        changes = "; ".join(f"`{s}` {_diff(by_pair[pick][f'acc-{s}_diff'], by_pair[pick][f'acc-{s}_diff_low'], by_pair[pick][f'acc-{s}_diff_high'], 'acc')} "
                            f"points (Holm p = {_p(by_pair[pick][f'acc-{s}_p_holm'], floor)})" for s in retention)
        clear = [s for s in lost if by_pair[pick][f"acc-{s}_p_holm"] < knowledge["alpha"]]
        if not lost:
            verdict = f"**The most cost-effective setup, `{pick}`, keeps general ability** by its estimate"
        elif clear:
            verdict = (f"**The most cost-effective setup, `{pick}`, loses general ability**: a clear drop on "
                       f"{', '.join(f'`{s}`' for s in clear)}")
        else:
            verdict = (f"**The most cost-effective setup, `{pick}`, may lose general ability**: its estimate falls beyond "
                       "the limit, but the drop is not clear at the Holm-adjusted level")
        out += [f"{verdict}. Retention against its reference: {changes}; limit −{max_drop:g} points "
                "(params report.max_retention_drop).", ""]
    header = ["setup"]
    for s in sets:
        header += [f"{s} accuracy [interval]", f"Δ {s} [interval]", "p (Holm)"]
    table = []
    for r in rows:
        line = [f"`{r['run']}`" + (" ⚠" if flags.get(r["run"]) else "")]
        for s in sets:
            k = f"acc-{s}"
            line.append(_with_interval(r, k))
            c = by_pair.get(r["run"])
            line += ([_diff(c[f"{k}_diff"], c[f"{k}_diff_low"], c[f"{k}_diff_high"], k), _p(c[f"{k}_p_holm"], floor)]
                     if c else ["–", "–"])
        table.append(line)
    return out + [_table(header, table), ""]


def _judge_section(comparisons: list[dict], judge: dict, primary: str, floor: float, level: str) -> list[str]:
    """The judge's pairwise verdicts: win, tie and loss rates per judged comparison, the win rate with
    its interval and Holm-adjusted p-value, and how far the judge agreed with itself."""
    j, usage = judge["judge"], judge["usage"]
    consistency = judge["consistency"]
    judged = [c for c in comparisons if "win-rate_p_holm" in c]
    out = ["## The judge's verdicts", "",
           f"`{j['model']}` (temperature {j['temperature']:g}, seed {j['seed']}, rubric sha256 `{j['rubric_sha256']}`) compared "
           "each setup's answer with its reference's and with the next smaller scale's, seed against seed, and was asked "
           "each pair in both orders. A verdict counts only when both orders name the same answer; otherwise the pair is a "
           "tie. Win rate = wins + ties / 2 (50: no preference). Its interval and two-sided paired p-value come from the "
           "same bootstrap as every other comparison, and the p-value is Holm-adjusted with the whole comparisons table. "
           f"Unparseable replies are left out of every rate and counted: {judge['unparseable']} of "
           f"{judge['judged_pairs']} pairs; {judge.get('identical_answers', 0)} pairs had identical answers (ties, not asked).",
           ""]
    if consistency is not None:
        out += [f"**Consistency: the two orders agreed in {consistency:.1%} of the parseable pairs.**"
                + (" Below half, the judge's position in the prompt decides more of its verdicts than the answers do: "
                   "read its win rates as weak evidence." if consistency < 0.5 else ""), ""]
    out += [_table(["setup", "against", "win", "tie", "loss", f"win rate [{level} interval]", "p (Holm)", "orders agree",
                    "reading"],
                   [[f"`{c['a']}`", f"`{c['b']}`", f"{c['win_share']:.1%}", f"{c['tie_share']:.1%}", f"{c['loss_share']:.1%}",
                     f"{c['win-rate']:.1f} [{c['win-rate_low']:.1f}, {c['win-rate_high']:.1f}]", _p(c["win-rate_p_holm"], floor),
                     f"{c['consistent_share']:.1%}", c["win-rate_reading"]] if c["judged_pairs"] > c["unparseable"] else
                    [f"`{c['a']}`", f"`{c['b']}`", "–", "–", "–", "every reply unparseable", "–", "–", "–"] for c in judged]),
            "",
            f"Requests: {usage['requests']} ({usage['retries']} retries), {usage['prompt_tokens']} prompt and "
            f"{usage['completion_tokens']} completion tokens; {usage['judgments_from_cache']} of {usage['judgments_needed']} "
            "ordered judgments came from the cache of earlier runs (data/judge_cache.jsonl). A judge of the same model family "
            "as the tuned model may prefer its style; the judge is named above so that a reader can weigh it."
            + ("" if primary == "win-rate" else " The verdict's metric is not the judge's (params report.primary_metric)."),
            ""]
    return out
