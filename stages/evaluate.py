"""Stage evaluate@<method>-<scale>-<seed>, evaluate_base, evaluate_base_4bit: score a run's answers.

Run:    dvc repro evaluate@lora-2k-42  (or: python -m stages.evaluate lora-2k-42); likewise base, base-4bit
Reads:  data/predictions/<run>.jsonl (from generate), params seed, evaluate.bootstrap
Writes: data/scores/<run>.jsonl, one line per answer: {"id", rouge-1, rouge-2, rouge-l, char-bleu-4,
        "bleu_stats"} (sacrebleu's sentence statistics, which summed give any subset's corpus BLEU)
        metrics/evaluate/<run>.json: rouge-1/2/l (jieba + rouge-chinese F1 x100, mean over all
        answers, an empty answer scores 0), bleu (sacrebleu corpus BLEU, tokenize zh, its signature),
        char-bleu-4 (LLaMA-Factory's bleu-4), n_test, and under `interval` the bootstrap interval
        of each (test questions resampled evaluate.bootstrap.resamples times, seeded by seed)

Only the answers and the metrics code are inputs: editing the metrics reruns this stage and not
generation. References are scored whole, never truncated.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from medqa_scale.core.cli import run
from medqa_scale.core.durable import read_jsonl, remove_stale, write_json, write_jsonl
from medqa_scale.evaluate.metrics import (METRICS, bleu_zh, bootstrap_indices, interval, per_sample_scores, point_estimates,
                                 resampled, scores_matrix)
from medqa_scale.core.params import load_params

log = logging.getLogger(__name__)


def main() -> None:
    name = sys.argv[1]
    scores_file, metrics_file = Path("data/scores") / f"{name}.jsonl", Path("metrics/evaluate") / f"{name}.json"
    remove_stale(scores_file, metrics_file)
    p = load_params()
    answers = read_jsonl(Path("data/predictions") / f"{name}.jsonl")
    predictions, references = [a["prediction"] for a in answers], [a["reference"] for a in answers]
    scores = per_sample_scores(predictions, references)
    table, b = scores_matrix([scores]), p["evaluate"]["bootstrap"]
    values = {k: float(v[0]) for k, v in point_estimates(table).items()}
    resamples = resampled(table, bootstrap_indices(len(answers), b["resamples"], p["seed"]))
    write_jsonl(scores_file, [{"id": a["id"], **s} for a, s in zip(answers, scores)])
    write_json(metrics_file, {**{k: values[k] for k in METRICS}, "bleu_signature": bleu_zh(predictions, references)[1],
                              "n_test": len(answers),
                              "interval": {"confidence": b["confidence"], "resamples": b["resamples"],
                                           **{k: interval(resamples[k], b["confidence"]) for k in METRICS}}})
    log.info("%s: rouge-l %.2f [%.2f, %.2f], bleu %.2f", name, values["rouge-l"],
             *interval(resamples["rouge-l"], b["confidence"]).values(), values["bleu"])


if __name__ == "__main__":
    run(main)
