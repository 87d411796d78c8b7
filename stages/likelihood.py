"""Stage likelihood@<method>-<scale>-<seed>, likelihood_base, likelihood_base_4bit: the reference
answers' negative log-likelihood under a run, the study's primary metric.

Run:    dvc repro likelihood@lora-2k-42  (or: python -m stages.likelihood lora-2k-42); likewise base, base-4bit
Reads:  models/base, models/adapters/<run> (not for the bases), data/split/test.jsonl,
        data/params/quantization-<method>.json (quantization-qlora.json for base-4bit), params seed,
        precision, device (undeclared: where, not what), model.trust_remote_code, model.chat_template_kwargs,
        evaluate.max_samples, evaluate.batch_size, evaluate.bootstrap
Writes: data/likelihood/<run>.jsonl, one {"id", "group", "nll_stats": [summed NLL in nats, answer tokens]}
        per test question, in test order
        metrics/likelihood/<run>.json: nll (total NLL over total answer tokens), perplexity (its exp),
        answer_tokens, n_test, and under `interval` the bootstrap interval of nll (groups of test
        questions resampled evaluate.bootstrap.resamples times, seeded by seed)

Teacher-forced, so no generation setting reruns it. The adapter runs unmerged, as training's eval
loss ran it; a QLoRA adapter on the 4-bit base it was trained on, base-4bit being that base alone.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.core.durable import read_json, read_jsonl, remove_stale, write_json, write_jsonl
from medqa_scale.core.params import REFERENCE_RUNS, load_params, run_method
from medqa_scale.evaluate.likelihood import answer_nll, examples
from medqa_scale.evaluate.metrics import NLL, bootstrap_counts, interval, point_estimates, resampled, scores_matrix
from medqa_scale.model.device import keep_bitsandbytes_out, needs_bitsandbytes, pin_device, resolve_precision
from medqa_scale.model.loading import load_run_model

log = logging.getLogger(__name__)

BASE = Path("models/base")
TEST = Path("data/split/test.jsonl")


def main() -> None:
    name = sys.argv[1]
    method = run_method(name)
    if not needs_bitsandbytes(method):  # before peft and transformers are imported
        keep_bitsandbytes_out()
    scores_file, metrics_file = Path("data/likelihood") / f"{name}.jsonl", Path("metrics/likelihood") / f"{name}.json"
    remove_stale(scores_file, metrics_file)
    p = load_params()
    pin_device(p["device"])
    from transformers import AutoTokenizer

    e = p["evaluate"]
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    test = read_jsonl(TEST)[: e["max_samples"]]
    try:
        encoded = examples(tokenizer, [r["messages"] for r in test], p["model"]["chat_template_kwargs"])
    except ValueError as err:
        raise PipelineError(f"{TEST}: {err}; check model.chat_template_kwargs") from None
    quantization = read_json(Path("data/params") / f"quantization-{method}.json") if method else None
    adapter = None if name in REFERENCE_RUNS else Path("models/adapters") / name
    model = load_run_model(BASE, adapter, quantization, precision=resolve_precision(p["precision"]),
                           trust_remote_code=p["model"]["trust_remote_code"], merge=False)
    rows = [{"id": r["id"], "group": r.get("group", r["id"]), "nll_stats": [s["nll"], s["tokens"]]}
            for r, s in zip(test, answer_nll(model, encoded, e["batch_size"], tokenizer.pad_token_id))]
    b = e["bootstrap"]
    table = scores_matrix([rows])
    value = float(point_estimates(table)[NLL][0])
    bounds = interval(resampled(table, bootstrap_counts([r["group"] for r in rows], b["resamples"], p["seed"]))[NLL],
                      b["confidence"])
    write_jsonl(scores_file, rows)
    write_json(metrics_file, {NLL: value, "perplexity": math.exp(value), "answer_tokens": sum(r["nll_stats"][1] for r in rows),
                              "n_test": len(rows), "interval": {"confidence": b["confidence"], "resamples": b["resamples"],
                                                                NLL: bounds}})
    log.info("%s: answer NLL %.4f per token [%.4f, %.4f], perplexity %.2f", name, value, bounds["low"], bounds["high"],
             math.exp(value))


if __name__ == "__main__":
    run(main)
