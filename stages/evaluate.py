"""Stage evaluate@<method>-<scale>-<seed>, evaluate_base, evaluate_base_4bit: score a run's answers,
and sum up its reference answers' likelihood (the study's primary metric).

Run:    dvc repro evaluate@lora-2k-42  (or: python -m stages.evaluate lora-2k-42); likewise base, base-4bit
Reads:  data/predictions/<run>.jsonl and data/likelihood/<run>.jsonl (from generate), params seed,
        evaluate.bootstrap
Writes: data/scores/<run>.jsonl, one line per answer: {"id", "group", rouge-1, rouge-2, rouge-l,
        lf-rouge-1, lf-rouge-2, lf-rouge-l, char-bleu-4, "bleu_stats" (sacrebleu's sentence
        statistics, which summed give any subset's corpus BLEU), and the answer's health:
        ran_to_max_new_tokens, repeated_4grams, length_ratio, broken_characters, answer_chars,
        reference_chars}
        metrics/evaluate/<run>.json: rouge-1/2/l (every n-gram occurrence, jieba words without
        punctuation, F1 x100, mean over all answers, an answer without words scores 0), bleu
        (sacrebleu corpus BLEU, tokenize zh, its signature), lf-rouge-1/2/l and char-bleu-4
        (LLaMA-Factory's numbers), n_test, `health` (share of answers that ran to max_new_tokens,
        mean share of repeated 4-grams, answer over reference length, share with broken
        characters), and under `interval` the bootstrap interval of each metric (groups of test
        questions resampled evaluate.bootstrap.resamples times, seeded by seed)
        metrics/likelihood/<run>.json: nll (total NLL over total answer tokens), perplexity (its exp),
        answer_tokens, n_test, and under `interval` the bootstrap interval of nll (the same resamples)

Only the answers and the metrics code are inputs: editing the metrics reruns this stage and not
generation. References are scored whole, never truncated.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.core.durable import read_jsonl, remove_stale, write_json, write_jsonl
from medqa_scale.core.params import load_params
from medqa_scale.evaluate.metrics import (METRICS, NLL, bleu_zh, bootstrap_counts, health_per_sample, health_summary, interval,
                                          nll_summary, per_sample_scores, point_estimates, resampled, scores_matrix)

log = logging.getLogger(__name__)


def main() -> None:
    name = sys.argv[1]
    scores_file, metrics_file = Path("data/scores") / f"{name}.jsonl", Path("metrics/evaluate") / f"{name}.json"
    nll_metrics_file = Path("metrics/likelihood") / f"{name}.json"
    remove_stale(scores_file, metrics_file, nll_metrics_file)
    p = load_params()
    answers = read_jsonl(Path("data/predictions") / f"{name}.jsonl")
    predictions, references = [a["prediction"] for a in answers], [a["reference"] for a in answers]
    rows = [{"id": a["id"], "group": a.get("group", a["id"]), **s,
             **health_per_sample(a["prediction"], a["reference"], a.get("ran_out", False)),
             "answer_chars": len(a["prediction"]), "reference_chars": len(a["reference"])}
            for a, s in zip(answers, per_sample_scores(predictions, references))]
    table, b = scores_matrix([rows]), p["evaluate"]["bootstrap"]
    values = {k: float(v[0]) for k, v in point_estimates(table).items()}
    resamples = resampled(table, bootstrap_counts([r["group"] for r in rows], b["resamples"], p["seed"]))
    health = health_summary(rows)
    nll_rows = read_jsonl(Path("data/likelihood") / f"{name}.jsonl")
    if [r["id"] for r in nll_rows] != [r["id"] for r in rows]:
        raise PipelineError(f"data/likelihood/{name}.jsonl scores other test questions than data/predictions/{name}.jsonl; "
                            f"rerun their stage: dvc repro -f {generate_stage(name)}")
    nll = nll_summary(nll_rows, b["resamples"], p["seed"], b["confidence"])
    write_jsonl(scores_file, rows)
    write_json(metrics_file, {**{k: values[k] for k in METRICS}, "bleu_signature": bleu_zh(predictions, references)[1],
                              "n_test": len(answers), "health": health,
                              "interval": {"confidence": b["confidence"], "resamples": b["resamples"],
                                           **{k: interval(resamples[k], b["confidence"]) for k in METRICS}}})
    write_json(nll_metrics_file, nll)
    log.info("%s: answer NLL %.4f per token [%.4f, %.4f]; rouge-l %.2f [%.2f, %.2f], bleu %.2f; %.0f%% ran to "
             "max_new_tokens, %.0f%% repeated 4-grams", name, nll[NLL], *nll["interval"][NLL].values(),
             values["rouge-l"], *interval(resamples["rouge-l"], b["confidence"]).values(), values["bleu"],
             100 * health["ran_to_max_new_tokens"], 100 * health["repeated_4grams"])


def generate_stage(run: str) -> str:
    """The DVC stage that wrote a run's answers and likelihood."""
    return {"base": "generate_base", "base-4bit": "generate_base_4bit"}.get(run, f"generate@{run}")


if __name__ == "__main__":
    run(main)
