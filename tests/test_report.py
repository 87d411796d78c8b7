"""medqa_scale.evaluate.report: the page that answers the study's question.

Run: python -m pytest -q tests/test_report.py
"""

from __future__ import annotations

import pandas as pd

from medqa_scale.evaluate.report import report_markdown

METRICS = ("rouge-1", "rouge-2", "rouge-l", "bleu", "char-bleu-4")


def setup(run, method, n_train, score, cost=None, seeds=1):
    row = {"run": run, "method": method, "n_train": n_train, "seeds": seeds}
    for k in METRICS:
        row.update({k: score, f"{k}_low": score - 2.5, f"{k}_high": score + 2.5, f"{k}_seed_sd": 1.25 if seeds > 1 else 0.0})
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
PAIRS = [{"a": "lora-2k", "b": "lora-1k", "rouge-l_diff": 4.0, "rouge-l_p": 0.0004, "rouge-l_diff_low": 1.0,
          "rouge-l_diff_high": 7.0, "bleu_diff": 1.5, "bleu_p": 0.2, "bleu_diff_low": -1.0, "bleu_diff_high": 4.0,
          "rouge-l_reading": "no clear difference"}]
CHOICE = {"choice": "lora-1k", "best": "lora-2k", "indistinguishable_from_best": ["lora-1k", "lora-2k", "qlora-2k"],
          "rule": "the cheapest setup (lowest train_runtime_s) whose rouge-l interval overlaps the best setup's"}
EXAMPLES = [{"question": "头痛怎么办？", "reference": "多休息|多喝水\n必要时就医",
             "answers": {"base": "不知道", "lora-2k-42": "多休息", "qlora-2k-42": "x" * 400}}]


def render(**kw):
    args = dict(confidence=0.95, resamples=1000, n_test=200, seeds=[42], produced_on="tiny model, fp32 on CPU (2 cores)")
    return report_markdown(TABLE, PAIRS, CHOICE, EXAMPLES, **{**args, **kw})


def test_the_report_states_the_verdict_by_its_rule():
    md = render()
    assert "**Most cost-effective: `lora-1k`** (ROUGE-L 40.00 [37.50, 42.50], 10 s of training)" in md
    assert "Rule: the cheapest setup (lowest train_runtime_s) whose rouge-l interval overlaps the best setup's" in md
    assert "best setup by ROUGE-L is `lora-2k`" in md and "`lora-1k, qlora-2k` cannot be told apart" in md


def test_the_results_carry_intervals_and_the_comparisons_p_values_and_readings():
    md = render()
    assert "| `lora-2k` | 2000 | 44.00 [41.50, 46.50] |" in md
    assert "| `base-4bit` | 0 |" in md
    assert "| `lora-2k` | `lora-1k` | +4.00 [+1.00, +7.00] | < 0.001 | +1.50 [-1.00, +4.00] | 0.200 | no clear difference |" in md
    assert "95% bootstrap intervals from 1000 resamples" in md and "200 test questions" in md
    for figure in ("data_scale_comparison.png", "method_comparison.png", "loss_curves.png"):
        assert f"]({figure})" in md


def test_the_cost_table_names_what_memory_it_shows():
    md = render()
    assert "peak GPU memory (MB, CUDA max allocated)" in md
    assert "| `qlora-2k` | 30.0 | 900 | 750 | 40.0 | 800 | 1.5000 |" in md
    assert "| `base` | 0 |" in md and "| `base` | 0.0" not in md  # references have no training cost row


def test_several_seeds_show_their_spread():
    md = render(seeds=[42, 43, 44])
    assert "3 training seed(s) per setup (42, 43, 44)" in md and "and of the seeds" in md


def test_example_answers_are_side_by_side_and_cannot_break_the_table():
    md = render()
    assert "**1. 头痛怎么办？**" in md
    assert "| reference | 多休息\\|多喝水 必要时就医 |" in md
    assert "| `lora-2k-42` | 多休息 |" in md
    long_cell = next(line for line in md.splitlines() if line.startswith("| `qlora-2k-42`"))
    assert long_cell.endswith("… |") and len(long_cell) < 200
