"""Stage evaluate@<method>-<scale> and evaluate_base: answer the test set and score the answers.

Run:    dvc repro evaluate@lora-2k  (or: python -m stages.evaluate lora-2k)
        dvc repro evaluate_base     (or: python -m stages.evaluate base), the base model, no adapter
        dvc repro evaluate_base_4bit (or: python -m stages.evaluate base-4bit), the base loaded 4-bit as
                                    QLoRA trains on it, no adapter: QLoRA's own reference
Reads:  models/base, models/adapters/<run> (not for the bases), data/split/test.jsonl,
        data/params/quantization-<method>.json (quantization-qlora.json for base-4bit), params seed, precision,
        model.trust_remote_code, evaluate
Writes: data/predictions/<run>.jsonl, one {"id", "question", "reference", "prediction"} per line
        metrics/evaluate/<run>.json (rouge-1, rouge-2, rouge-l, bleu, char-bleu-4 (LLaMA-Factory's
        bleu-4), each with its bootstrap
        interval, samples_per_second, tokens_per_second, peak_memory_mb, answers that ran to
        max_new_tokens, and the sacrebleu signature)
        metrics/runinfo/evaluate-<run>.json (library versions, hardware, the generation config)

Generation is greedy (evaluate.generation, nothing inherited from the model) and batched with
left padding, on the prompt the training chat template renders, and stops at the template's
end-of-turn token. A QLoRA adapter is evaluated on the 4-bit base it was trained on. Intervals
resample the test questions evaluate.bootstrap.resamples times, seeded by seed.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from medqa_scale.cli import run
from medqa_scale.device import device, peak_memory_mb, reset_peak_memory, resolve_precision
from medqa_scale.durable import read_json, read_jsonl, remove_stale, write_json, write_jsonl
from medqa_scale.generation import generate_answers
from medqa_scale.metrics import CHAR_BLEU, bleu_zh, bootstrap_indices, bootstrap_intervals, char_bleu4, rouge_zh
from medqa_scale.modeling import add_saved_adapter, load_base_model
from medqa_scale.params import BASE_4BIT_RUN, BASE_RUN, REFERENCE_RUNS, load_params, parse_run
from medqa_scale.runinfo import environment, revisions

log = logging.getLogger(__name__)

BASE = Path("models/base")
TEST = Path("data/split/test.jsonl")


def main() -> None:
    name = sys.argv[1]
    predictions_file = Path("data/predictions") / f"{name}.jsonl"
    metrics_file, runinfo_file = Path("metrics/evaluate") / f"{name}.json", Path("metrics/runinfo") / f"evaluate-{name}.json"
    remove_stale(predictions_file, metrics_file, runinfo_file)
    p = load_params()
    from transformers import AutoTokenizer, set_seed

    set_seed(p["seed"])
    precision = resolve_precision(p["precision"])
    tokenizer = AutoTokenizer.from_pretrained(BASE, padding_side="left")
    model = load_model(p, name, precision)
    test = read_jsonl(TEST)
    reset_peak_memory()
    e = p["evaluate"]
    predictions, speed = generate_answers(model, tokenizer, [r["messages"] for r in test], e["batch_size"],
                                          e["max_new_tokens"], e["generation"])
    references = [r["answer"] for r in test]
    bleu, signature = bleu_zh(predictions, references)
    indices = bootstrap_indices(len(test), e["bootstrap"]["resamples"], p["seed"])
    metrics = {**rouge_zh(predictions, references), "bleu": bleu, "bleu_signature": signature,
               CHAR_BLEU: char_bleu4(predictions, references), **speed,
               "peak_memory_mb": peak_memory_mb(), "n_test": len(test),
               "interval": {"confidence": e["bootstrap"]["confidence"], "resamples": e["bootstrap"]["resamples"],
                            **bootstrap_intervals(predictions, references, indices, e["bootstrap"]["confidence"])}}
    write_jsonl(predictions_file, [{"id": r["id"], "question": r["question"], "reference": r["answer"], "prediction": pred}
                                   for r, pred in zip(test, predictions)])
    write_json(metrics_file, metrics)
    write_json(runinfo_file, {"environment": environment(), "precision": precision, "device": device(),
                              "revisions": revisions(BASE, TEST), "generation_config": model.generation_config.to_dict()})
    log.info("%s: rouge-l %.2f, bleu %.2f, %.1f samples/s", name, metrics["rouge-l"], bleu, speed["samples_per_second"])


def load_model(p: dict, name: str, precision: str):
    """The base model alone for `base`, loaded 4-bit as QLoRA's for `base-4bit`; else the base
    its run trained on, with the run's adapter."""
    method = {BASE_RUN: None, BASE_4BIT_RUN: "qlora"}.get(name, parse_run(name)[0])
    quantization = read_json(Path("data/params") / f"quantization-{method}.json") if method else None
    model = load_base_model(BASE, quantization=quantization, precision=precision,
                            trust_remote_code=p["model"]["trust_remote_code"])
    if name not in REFERENCE_RUNS:
        model = add_saved_adapter(model, Path("models/adapters") / name)
    return model.eval()


if __name__ == "__main__":
    run(main)
