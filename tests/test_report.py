"""medqa_scale.evaluate.report: the page that answers the study's question.

Run: python -m pytest -q tests/test_report.py
"""

from __future__ import annotations

import pandas as pd

from medqa_scale.evaluate.report import report_markdown

METRICS = ("nll", "rouge-1", "rouge-2", "rouge-l", "bleu", "char-bleu-4", "lf-rouge-l")
HEALTH = {"ran_to_max_new_tokens": 0.05, "repeated_4grams": 0.125, "length_ratio": 0.8, "broken_characters": 0.0}


def setup(run, method, n_train, score, cost=None, seeds=1):
    row = {"run": run, "method": method, "n_train": n_train, "seeds": seeds, **HEALTH}
    for k in METRICS:
        value = 3 - score / 50 if k == "nll" else score
        width = 0.05 if k == "nll" else 2.5
        row.update({k: value, f"{k}_low": value - width, f"{k}_high": value + width,
                    f"{k}_seed_sd": width / 2 if seeds > 1 else 0.0})
    row["perplexity"] = 2.718281828 ** row["nll"]
    if cost is not None:
        row.update(train_runtime_s=cost, train_tokens_per_second=900.0, train_peak_memory_mb=750.0,
                   train_peak_memory_kind="cuda_max_allocated", samples_per_second=40.0, tokens_per_second=800.0,
                   best_eval_loss=1.5)
    else:
        row.update(samples_per_second=50.0, tokens_per_second=900.0)
    return row


TABLE = pd.DataFrame([setup("base", "base", 0, 18.0), setup("base-4bit", "base-4bit", 0, 17.0),
                      setup("lora-1k", "lora", 1000, 40.0, 10.0), setup("lora-2k", "lora", 2000, 44.0, 20.0),
                      setup("qlora-2k", "qlora", 2000, 43.0, 30.0)])


def pair(a, b, reading):
    row = {"a": a, "b": b}
    for k, (d, p) in {"nll": (-0.08, 0.0002), "rouge-l": (4.0, 0.0004), "bleu": (1.5, 0.2)}.items():
        row.update({f"{k}_diff": d, f"{k}_p": p, f"{k}_p_holm": min(1, 3 * p), f"{k}_diff_low": d - 1, f"{k}_diff_high": d + 1,
                    f"{k}_reading": reading})
    return row


PAIRS = [pair("lora-2k", "lora-1k", "lora-2k better")]
CHOICE = {"metric": "nll", "choice": "lora-1k", "best": "lora-2k", "qualifying": ["lora-1k", "lora-2k", "qlora-2k"],
          "within_margin": ["lora-1k", "lora-2k"], "shortfall_bound": {}, "rule": "THE RULE"}
NONE = {"metric": "rouge-l", "choice": None, "best": None, "qualifying": [], "shortfall_bound": {}, "rule": "THE RULE"}
STEP = {"from": 1000, "to": 2000, "gain": -0.08, "low": -0.1, "high": -0.06, "p": 0.00025, "extra_hours": 0.0028,
        "gain_per_hour": -28.6}
FIT = {"per_doubling": {"gain": -0.08, "low": -0.1, "high": -0.06}, "steps": [STEP], "saturating": None}
FITS = {"lora": {"nll": FIT, "rouge-l": {**FIT, "steps": [{**STEP, "gain": 4.0, "low": 1.0, "high": 7.0, "p": 0.01}]}}}
EXAMPLES = [{"question": "头痛怎么办？", "reference": "多休息|多喝水\n必要时就医",
             "answers": {"base": "不知道", "lora-2k-42": "多休息", "qlora-2k-42": "x" * 400}}]


def render(choice=CHOICE, rouge_choice=None, **kw):
    args = dict(primary="nll", alpha=0.05, margin={"nll": 0.02, "rouge-l": 1.0, "bleu": 1.0}, confidence=0.95,
                resamples=3999, n_test=200, groups=150, seeds=[42], produced_on="tiny model, fp32 on CPU (2 cores)")
    return report_markdown(TABLE, PAIRS, choice, rouge_choice or {**CHOICE, "metric": "rouge-l"}, FITS, EXAMPLES,
                           **{**args, **kw})


def test_the_report_opens_with_what_each_step_of_data_bought_then_the_verdict():
    md = render()
    assert md.index("## What each step of data bought") < md.index("## Verdict") < md.index("## Results")
    assert "![Scaling](scaling.png)" in md
    assert "`lora`, answer NLL/token: -0.0800 [-0.1000, -0.0600] per doubling" in md
    assert "| `lora` | 1000 → 2000 | -0.0800 [-0.1000, -0.0600] | ≤ 0.0003 | +4.00 [+1.00, +7.00] | 0.010 | 0.0028 | -28.600 |" in md


def test_the_report_states_the_verdict_its_rule_and_its_multiplicity():
    md = render()
    assert "**Most cost-effective: `lora-1k`** (answer NLL/token 2.2000 [2.1500, 2.2500], 10 s of training)" in md
    assert "The best qualifying setup is `lora-2k`" in md
    assert "Rule (params `report`, fixed before the numbers): THE RULE." in md
    assert "Holm's correction runs over all 3 p-values" in md and "1/(resamples + 1) = 0.00025" in md
    assert "A verdict by the same rule on ROUGE-L agrees (`lora-1k`)." in md


def test_without_a_qualifying_setup_no_winner_is_named():
    md = render(choice={**NONE, "metric": "nll"}, rouge_choice=NONE)
    assert "**No setup qualifies, so no setup is recommended.**" in md and "Most cost-effective" not in md


def test_a_rouge_verdict_that_differs_is_said():
    md = render(rouge_choice=NONE)
    assert "A verdict by the same rule on ROUGE-L would differ: no setup qualifies on ROUGE-L." in md


def test_one_seed_says_what_the_intervals_do_not_cover():
    md = render()
    assert "The intervals cover the test questions only" in md and "a difference between two single training runs" in md
    assert "`-S strategy=thorough`" in md
    several = render(seeds=[42, 43, 44])
    assert "3 training seed(s) per setup (42, 43, 44)" in several and "of its seeds (two levels)" in several
    assert "cover the test questions only" not in several


def test_the_results_health_and_comparisons_carry_intervals_and_adjusted_p_values():
    md = render()
    assert "| `lora-2k` | 2000 | 2.1200 [2.0700, 2.1700] | 44.00 [41.50, 46.50] |" in md
    assert "| `base-4bit` | 0 |" in md
    assert "| `lora-2k` | 5.0% | 12.5% | 0.80 | 0.0% |" in md
    assert ("| `lora-2k` | `lora-1k` | -0.0800 [-1.0800, +0.9200] | +4.00 [+3.00, +5.00] | +1.50 [+0.50, +2.50] "
            "| 0.0006 | 0.0012 | 0.600 | lora-2k better |") in md
    assert "200 test questions in 150 groups" in md
    for figure in ("data_scale_comparison.png", "method_comparison.png", "loss_curves.png"):
        assert f"]({figure})" in md


def test_the_cost_table_names_what_memory_it_shows():
    md = render()
    assert "peak GPU memory (MB, CUDA max allocated)" in md
    assert "| `qlora-2k` | 30.0 | 900 | 750 | 40.0 | 800 | 1.5000 |" in md
    assert "| `base` | 0.0" not in md  # references have no training cost row


def test_example_answers_are_side_by_side_and_cannot_break_the_table():
    md = render()
    assert "**1. 头痛怎么办？**" in md
    assert "| reference | 多休息\\|多喝水 必要时就医 |" in md
    assert "| `lora-2k-42` | 多休息 |" in md
    long_cell = next(line for line in md.splitlines() if line.startswith("| `qlora-2k-42`"))
    assert long_cell.endswith("… |") and len(long_cell) < 200


def judged_pair(a, b, win, tie, loss, p_holm, reading):
    return {**pair(a, b, reading), "judged_pairs": 200, "unparseable": 2, "agreeing_pairs": 150, "win_share": win,
            "tie_share": tie, "loss_share": loss, "consistent_share": 0.75, "win-rate": 100 * (win + tie / 2),
            "win-rate_low": 100 * (win + tie / 2) - 6, "win-rate_high": 100 * (win + tie / 2) + 6, "win-rate_p": p_holm / 2,
            "win-rate_p_holm": p_holm, "win-rate_reading": reading, "win-rate_diff": 100 * (win + tie / 2) - 50}


JUDGE = {"enabled": True, "judge": {"model": "Qwen2.5-72B-Instruct", "temperature": 0.0, "seed": 0, "max_tokens": 256,
                                    "rubric_sha256": "7e7c2b02bc9d0498"},
         "usage": {"requests": 812, "retries": 3, "prompt_tokens": 500_000, "completion_tokens": 40_000,
                   "judgments_needed": 800, "judgments_asked": 800, "judgments_from_cache": 0},
         "identical_answers": 4, "judged_pairs": 400, "unparseable": 4, "consistency": 0.42}


def test_the_judge_section_gives_win_tie_loss_with_intervals_holm_and_the_consistency():
    pairs = [judged_pair("lora-1k", "base", 0.6, 0.3, 0.1, 0.0004, "lora-1k better"),
             judged_pair("lora-2k", "lora-1k", 0.3, 0.4, 0.3, 1.0, "no clear difference"),
             pair("lora-2k", "qlora-2k", "no clear difference")]
    md = report_markdown(TABLE, pairs, CHOICE, {**CHOICE, "metric": "rouge-l"}, FITS, EXAMPLES, primary="nll", alpha=0.05,
                         margin={"nll": 0.02, "rouge-l": 1.0, "bleu": 1.0, "win-rate": 5.0}, confidence=0.95,
                         resamples=3999, n_test=200, groups=150, seeds=[42], produced_on="x", judge=JUDGE)
    assert "## The judge's verdicts" in md and "`Qwen2.5-72B-Instruct` (temperature 0, seed 0" in md
    assert "| `lora-1k` | `base` | 60.0% | 30.0% | 10.0% | 75.0 [69.0, 81.0] | 0.0004 | 75.0% | lora-1k better |" in md
    assert "**Consistency: the two orders agreed in 42.0% of the parseable pairs.** Below half" in md
    assert "4 of 400 pairs" in md and "0 of 800 ordered judgments came from the cache" in md
    # Holm's family: 3 pairs x 3 metrics, and the 2 judged win rates
    assert "Holm's correction runs over all 11 p-values" in md and "win rate in the 2 pairs it judged" in md
    assert "| `lora-2k` | `qlora-2k` |" in md  # the unjudged pair keeps its row in the comparisons table
    plain = render()
    assert "judge" not in plain.lower() and "win-rate" not in plain
