"""Stage generate@<method>-<scale>-<seed>, generate_base, generate_base_4bit: answer the test questions,
and score the reference answers' likelihood under the same model (the study's primary metric).

Run:    dvc repro generate@lora-2k-42   (or: python -m stages.generate lora-2k-42)
        dvc repro generate_base        (or: python -m stages.generate base), the base model, no adapter
        dvc repro generate_base_4bit   (or: python -m stages.generate base-4bit), the base loaded 4-bit as
                                       QLoRA trains on it, no adapter: QLoRA's own reference
Reads:  models/base, models/adapters/<run> (not for the bases), data/split/test.jsonl,
        data/params/quantization-<method>.json (quantization-qlora.json for base-4bit), params seed,
        precision, device (undeclared: where, not what), model.trust_remote_code, model.chat_template_kwargs,
        evaluate.{backend, max_samples, batch_size, max_new_tokens, generation}
Writes: data/predictions/<run>.jsonl, one {"id", "group", "question", "reference", "prediction",
        "ran_out"} per line (ran_out: the answer ran to max_new_tokens instead of ending)
        data/likelihood/<run>.jsonl, one {"id", "group", "nll_stats": [summed NLL of the reference
        answer in nats, its answer tokens]} per test question, in test order (teacher-forced)
        metrics/generate/<run>.json (samples/s, tokens/s, peak memory and what it measures, answers
        that ran to max_new_tokens, think blocks removed from answers, how the adapter was applied)
        metrics/runinfo/generate-<run>.json (library versions, hardware, the generation config, the
        chat template's arguments and the defaults taken for them)

Scoring is the next stage (evaluate), so that a change to the metrics never regenerates answers.
The likelihood is computed here because it needs the model this stage has loaded: a stage of its
own would load it again, and on CPU each stage's start-up costs more than the scoring (teacher-forced,
one forward pass per batch). Its answer tokens are those the training loss counts.
Generation is greedy (evaluate.generation, nothing inherited from the model), batched longest
first with left padding, on the prompt the training chat template renders, and stops at the
template's end-of-turn token. A LoRA adapter is merged into the full-precision base (answers
equal the unmerged adapter's, at the base model's speed); a QLoRA adapter stays unmerged on the
4-bit base it was trained on.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.core.durable import read_json, read_jsonl, remove_stale, write_json, write_jsonl
from medqa_scale.core.params import REFERENCE_RUNS, load_params, run_method
from medqa_scale.core.runinfo import environment, revisions
from medqa_scale.evaluate.generation import generate_answers, generation_config, strip_think, vllm_answers
from medqa_scale.evaluate.likelihood import answer_nll, examples
from medqa_scale.model.device import PeakMemory, device, keep_bitsandbytes_out, needs_bitsandbytes, pin_device, resolve_precision
from medqa_scale.model.chat_format import defaults_taken, resolve_template_kwargs
from medqa_scale.model.loading import load_run_model

log = logging.getLogger(__name__)

BASE = Path("models/base")
TEST = Path("data/split/test.jsonl")


def main() -> None:
    name = sys.argv[1]
    method = run_method(name)
    if not needs_bitsandbytes(method):  # before peft and transformers are imported
        keep_bitsandbytes_out()
    predictions_file, nll_file = Path("data/predictions") / f"{name}.jsonl", Path("data/likelihood") / f"{name}.jsonl"
    metrics_file, runinfo_file = Path("metrics/generate") / f"{name}.json", Path("metrics/runinfo") / f"generate-{name}.json"
    remove_stale(predictions_file, nll_file, metrics_file, runinfo_file)
    p = load_params()
    pin_device(p["device"])  # before anything touches CUDA
    from transformers import AutoTokenizer, set_seed

    set_seed(p["seed"])
    e, precision = p["evaluate"], resolve_precision(p["precision"])
    tokenizer = AutoTokenizer.from_pretrained(BASE, padding_side="left")
    test = read_jsonl(TEST)[: e["max_samples"]]
    quantization = read_json(Path("data/params") / f"quantization-{method}.json") if method else None
    adapter = None if name in REFERENCE_RUNS else Path("models/adapters") / name
    chats = [r["messages"] for r in test]
    try:  # before anything loads: a chat the template cannot split is the user's to fix
        encoded = examples(tokenizer, chats, p["model"]["chat_template_kwargs"])
    except ValueError as err:
        raise PipelineError(f"{TEST}: {err}; check model.chat_template_kwargs") from None
    config = generation_config(tokenizer, e["generation"], e["max_new_tokens"])  # the one GenerationConfig of the run
    if e["backend"] == "vllm" and quantization is None:
        how = "vllm"
        predictions, speed = vllm_answers(BASE, adapter, tokenizer, chats, config,
                                          dtype={"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[precision],
                                          seed=p["seed"], template_kwargs=p["model"]["chat_template_kwargs"])
        memory_mb, memory_kind = None, None
        model = load_run_model(BASE, adapter, quantization, precision=precision,
                               trust_remote_code=p["model"]["trust_remote_code"], merge=True)
    else:
        if e["backend"] == "vllm":
            log.info("%s: QLoRA's bitsandbytes 4-bit base runs on transformers, not vLLM", name)
        how = "none" if adapter is None else "unmerged on 4-bit base" if quantization else "merged"
        model = load_run_model(BASE, adapter, quantization, precision=precision,
                               trust_remote_code=p["model"]["trust_remote_code"], merge=True)
        memory = PeakMemory().start()  # after loading: on CPU, growth over the loaded model
        predictions, speed = generate_answers(model, tokenizer, chats, e["batch_size"], config,
                                              p["model"]["chat_template_kwargs"])
        memory_mb, memory_kind = memory.stop(), memory.kind
    nll = answer_nll(model, encoded, e["batch_size"], tokenizer.pad_token_id)  # the model that answered, merged or not
    ran_out = speed.pop("ran_out")
    predictions, think = strip_think(predictions)
    if any(think.values()):
        log.warning("%s: think blocks removed from answers before scoring: %s", name, think)
    write_jsonl(predictions_file, [{"id": r["id"], "group": r.get("group", r["id"]), "question": r["question"],
                                    "reference": r["answer"], "prediction": pred, "ran_out": out}
                                   for r, pred, out in zip(test, predictions, ran_out)])
    write_jsonl(nll_file, [{"id": r["id"], "group": r.get("group", r["id"]), "nll_stats": [n["nll"], n["tokens"]]}
                           for r, n in zip(test, nll)])
    write_json(metrics_file, {**speed, "peak_memory_mb": memory_mb, "peak_memory_kind": memory_kind,
                              "n_test": len(test), "think_blocks_removed": think, "adapter": how, "base_4bit": quantization is not None, "backend": "vllm" if how == "vllm" else "transformers"})
    write_json(runinfo_file, {"environment": environment(), "precision": precision, "device": device(),
                              "revisions": revisions(BASE, TEST),
                              "generation_config": config.to_dict(),
                              "chat_template_kwargs": resolve_template_kwargs(tokenizer, p["model"]["chat_template_kwargs"]),
                              "chat_template_defaults_taken": defaults_taken(tokenizer, p["model"]["chat_template_kwargs"])})
    log.info("%s: %d answers, %.1f samples/s (adapter: %s), %d ran to max_new_tokens; reference answer NLL %.4f per token",
             name, len(test), speed["samples_per_second"], how, speed["ran_to_max_new_tokens"],
             sum(n["nll"] for n in nll) / sum(n["tokens"] for n in nll))


if __name__ == "__main__":
    run(main)
