"""plots/report.md: the page that answers the study's question, as a pure function of the tables.

Every number carries its interval; a difference is called only where the intervals do not
overlap; the recommended setup follows a rule stated on the page.
"""

from __future__ import annotations

import pandas as pd

from medqa_scale.core.params import BASE_4BIT_RUN, BASE_RUN, REFERENCE_RUNS

METRIC_LABELS = {"rouge-1": "ROUGE-1", "rouge-2": "ROUGE-2", "rouge-l": "ROUGE-L", "bleu": "BLEU",
                 "char-bleu-4": "char-BLEU-4"}
MEMORY_LABELS = {"cuda_max_allocated": "peak GPU memory (MB, CUDA max allocated)",
                 "cpu_rss_growth_over_loaded_model": "memory growth over the loaded model (MB, CPU RSS)"}


def _cell(text: str, limit: int = 160) -> str:
    """One Markdown table cell: no pipes or line breaks, long answers cut with an ellipsis."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _with_interval(row, k: str) -> str:
    spread = f" ± {row[f'{k}_seed_sd']:.2f}" if row.get("seeds", 1) > 1 else ""
    return f"{row[k]:.2f}{spread} [{row[f'{k}_low']:.2f}, {row[f'{k}_high']:.2f}]"


def _p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def report_markdown(setups: pd.DataFrame, comparisons: list[dict], choice: dict, examples: list[dict], *,
                    confidence: float, resamples: int, n_test: int, seeds: list[int], produced_on: str) -> str:
    """The report: verdict, results with intervals, figures, comparisons with p-values, costs, and
    example answers side by side."""
    rows = setups.to_dict("records")  # dicts: metric names such as rouge-l are not attribute names
    tuned = [r for r in rows if r["run"] not in REFERENCE_RUNS]
    by_run = {r["run"]: r for r in rows}
    pick, best = by_run[choice["choice"]], by_run[choice["best"]]
    level = f"{confidence:.0%}"
    others = [r for r in choice["indistinguishable_from_best"] if r != best['run']]
    out = [
        "# What fine-tuning data is worth: results",
        "",
        f"Produced on {produced_on}. {n_test} test questions; {len(seeds)} training seed(s) per setup "
        f"({', '.join(map(str, seeds))}). Intervals are {level} bootstrap intervals from {resamples} resamples of the "
        "test questions" + (" and of the seeds" if len(seeds) > 1 else "") + ". "
        + ("Values are means over seeds ± their standard deviation. " if len(seeds) > 1 else "")
        + "ROUGE is jieba-segmented F1 x100 (rouge-chinese); BLEU is sacrebleu's corpus BLEU (tokenize zh); "
        "char-BLEU-4 is LLaMA-Factory's character-level sentence BLEU-4.",
        "",
        "## Verdict",
        "",
        f"**Most cost-effective: `{pick['run']}`** (ROUGE-L {_with_interval(pick, 'rouge-l')}, "
        f"{pick['train_runtime_s']:.0f} s of training).",
        "",
        f"Rule: {choice['rule']}. The best setup by ROUGE-L is `{best['run']}` "
        f"({_with_interval(best, 'rouge-l')})"
        + (f"; `{', '.join(others)}` cannot be told apart from it (their intervals overlap), so the cheapest of "
           "those is chosen." if others else "; no other setup's interval overlaps it."),
        "",
        "## Results",
        "",
        _table(["setup", "training samples", *METRIC_LABELS.values()],
               [[f"`{r['run']}`", r["n_train"], *(_with_interval(r, k) for k in METRIC_LABELS)] for r in rows]),
        "",
        f"`{BASE_RUN}` is the base model without an adapter; `{BASE_4BIT_RUN}` is the same model loaded 4-bit (NF4) as "
        "QLoRA trains on it, so that QLoRA's gain is measured against the model it trains.",
        "",
        "![Data scale](data_scale_comparison.png)",
        "",
        "## Comparisons",
        "",
        f"Paired bootstrap on the same resampled questions: the difference (first minus second), its {level} interval "
        "and two-sided p-value. A difference is called only where the two setups' intervals do not overlap; "
        "elsewhere the reading is \"no clear difference\" and no winner is picked.",
        "",
        _table(["first", "second", "Δ ROUGE-L [interval]", "p", "Δ BLEU [interval]", "p", "reading (ROUGE-L)"],
               [[f"`{c['a']}`", f"`{c['b']}`",
                 f"{c['rouge-l_diff']:+.2f} [{c['rouge-l_diff_low']:+.2f}, {c['rouge-l_diff_high']:+.2f}]", _p(c["rouge-l_p"]),
                 f"{c['bleu_diff']:+.2f} [{c['bleu_diff_low']:+.2f}, {c['bleu_diff_high']:+.2f}]", _p(c["bleu_p"]),
                 c["rouge-l_reading"]] for c in comparisons]),
        "",
        "![LoRA against QLoRA](method_comparison.png)",
        "",
        "## Cost",
        "",
        _table(["setup", "training time (s)", "training tokens/s", MEMORY_LABELS.get(tuned[0]["train_peak_memory_kind"], "peak memory (MB)"),
                "answers/s", "generated tokens/s", "best eval loss"],
               [[f"`{r['run']}`", f"{r['train_runtime_s']:.1f}", f"{r['train_tokens_per_second']:.0f}",
                 f"{r['train_peak_memory_mb']:.0f}", f"{r['samples_per_second']:.1f}", f"{r['tokens_per_second']:.0f}",
                 f"{r['best_eval_loss']:.4f}"] for r in tuned]),
        "",
        "Training time counts optimizer steps only (evaluation and checkpoint saving are apart, in "
        "metrics/train/). Answers/s is batched greedy generation; LoRA adapters are merged into the base for it, "
        "QLoRA adapters run unmerged on the 4-bit base.",
        "",
        "![Training curves](loss_curves.png)",
        "",
        "## Example answers",
        "",
    ]
    for i, ex in enumerate(examples, 1):
        out += [f"**{i}. {_cell(ex['question'], 300)}**", "",
                _table(["", "answer"], [["reference", _cell(ex["reference"])]] +
                       [[f"`{run}`", _cell(answer)] for run, answer in ex["answers"].items()]), ""]
    return "\n".join(out).rstrip() + "\n"
