"""Stage evaluate: score every run's answers, and sum up its reference answers' likelihood (the
study's primary metric).

Run:    dvc repro evaluate      (or: python -m stages.evaluate; python -m stages.evaluate lora-2k-42 base
                                 scores only the runs named, beside the others' files)
Reads:  data/predictions/<run>.jsonl and data/likelihood/<run>.jsonl (from generate) of each run that
        params methods x split.scales x train.seeds name, and of the references base and base-4bit;
        params seed, evaluate.bootstrap, methods, split.scales, train.seeds
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
One stage scores all runs: scoring a run takes about 1.5 s on 2 cores, and a stage per run spent
twice that again starting Python, jieba and NLTK, and as long once more in DVC's rewrite of dvc.lock.
"""

from __future__ import annotations

import logging
import sys
from contextlib import ExitStack
from pathlib import Path

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.core.durable import atomic_path, read_jsonl, remove_stale, write_json, write_jsonl
from medqa_scale.core.params import load_params, runs_of
from medqa_scale.evaluate.metrics import (METRICS, NLL, bleu_zh, bootstrap_counts, health_per_sample, health_summary, interval,
                                          nll_summary, per_sample_scores, point_estimates, resampled, scores_matrix)

log = logging.getLogger(__name__)

OUTPUTS = (Path("data/scores"), Path("metrics/evaluate"), Path("metrics/likelihood"))


def main() -> None:
    p = load_params()
    b, seed = p["evaluate"]["bootstrap"], p["seed"]
    named = sys.argv[1:]
    runs = named or runs_of(p["methods"], p["split"]["scales"], p["train"]["seeds"])
    for name in runs:
        if not (Path("data/predictions") / f"{name}.jsonl").exists():
            raise PipelineError(f"data/predictions/{name}.jsonl not found: answer first with `dvc repro {generate_stage(name)}`")
    remove_stale(*OUTPUTS)
    if named:  # a quick look at some runs: their files only, beside the others'
        for name in named:
            evaluate_run(name, b, seed, OUTPUTS)
        return
    with ExitStack() as stack:  # each folder whole or not at all: files of runs the params no longer name go
        folders = [stack.enter_context(atomic_path(folder, directory=True)) for folder in OUTPUTS]
        for name in runs:
            evaluate_run(name, b, seed, folders)
    log.info("scored %d runs", len(runs))


def evaluate_run(name: str, b: dict, seed: int, folders: list[Path]) -> None:
    """Score one run's answers and sum up its likelihood; write its file in each of `folders`
    (scores, evaluate metrics, likelihood metrics)."""
    scores_file, metrics_file, nll_metrics_file = (folder / f"{name}{suffix}" for folder, suffix
                                                   in zip(folders, (".jsonl", ".json", ".json")))
    answers = read_jsonl(Path("data/predictions") / f"{name}.jsonl")
    predictions, references = [a["prediction"] for a in answers], [a["reference"] for a in answers]
    rows = [{"id": a["id"], "group": a.get("group", a["id"]), **s,
             **health_per_sample(a["prediction"], a["reference"], a.get("ran_out", False)),
             "answer_chars": len(a["prediction"]), "reference_chars": len(a["reference"])}
            for a, s in zip(answers, per_sample_scores(predictions, references))]
    table = scores_matrix([rows])
    values = {k: float(v[0]) for k, v in point_estimates(table).items()}
    resamples = resampled(table, bootstrap_counts([r["group"] for r in rows], b["resamples"], seed))
    health = health_summary(rows)
    nll_rows = read_jsonl(Path("data/likelihood") / f"{name}.jsonl")
    if [r["id"] for r in nll_rows] != [r["id"] for r in rows]:
        raise PipelineError(f"data/likelihood/{name}.jsonl scores other test questions than data/predictions/{name}.jsonl; "
                            f"rerun their stage: dvc repro -f {generate_stage(name)}")
    nll = nll_summary(nll_rows, b["resamples"], seed, b["confidence"])
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
