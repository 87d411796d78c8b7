"""Stage evaluate@<method>-<scale> and evaluate_base: answer the test set and score the answers.

Run:    dvc repro evaluate@lora-2k  (or: python -m stages.evaluate lora-2k)
        dvc repro evaluate_base     (or: python -m stages.evaluate base), the base model, no adapter
Reads:  models/base, models/adapters/<run> (not for base), data/split/test.jsonl,
        params seed, precision, model.trust_remote_code, quantization, evaluate
Writes: data/predictions/<run>.jsonl, one {"id", "question", "reference", "prediction"} per line
        metrics/evaluate/<run>.json (rouge-1, rouge-2, rouge-l, bleu, samples_per_second,
        tokens_per_second, peak_memory_mb, and the sacrebleu signature)
        metrics/runinfo/evaluate-<run>.json (library versions, hardware)

Generation is greedy and batched with left padding, on the prompt the training chat template
renders. A QLoRA adapter is evaluated on the 4-bit base it was trained on.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from stages.atomic import read_jsonl, write_json, write_jsonl
from stages.formatting import prompt_ids
from stages.metrics import bleu_zh, rouge_zh
from stages.modeling import BASE, load_base_model
from stages.params import load_params, parse_run
from stages.runinfo import (cli, device, environment, peak_memory_mb, reset_peak_memory, resolve_precision,
                            revisions)

log = logging.getLogger(__name__)

TEST = Path("data/split/test.jsonl")


def main() -> None:
    run = sys.argv[1]
    p = load_params()
    from transformers import AutoTokenizer, set_seed

    set_seed(p["seed"])
    precision = resolve_precision(p["precision"])
    tokenizer = AutoTokenizer.from_pretrained(BASE, padding_side="left")
    model = load_model(p, run, precision)
    test = read_jsonl(TEST)
    reset_peak_memory()
    predictions, speed = generate_answers(model, tokenizer, [r["messages"] for r in test],
                                          p["evaluate"]["batch_size"], p["evaluate"]["max_new_tokens"])
    references = [r["answer"] for r in test]
    bleu, signature = bleu_zh(predictions, references)
    metrics = {**rouge_zh(predictions, references), "bleu": bleu, "bleu_signature": signature, **speed,
               "peak_memory_mb": peak_memory_mb(), "n_test": len(test)}
    write_jsonl(Path("data/predictions") / f"{run}.jsonl",
                [{"id": r["id"], "question": r["question"], "reference": r["answer"], "prediction": pred}
                 for r, pred in zip(test, predictions)])
    write_json(Path("metrics/evaluate") / f"{run}.json", metrics)
    write_json(Path("metrics/runinfo") / f"evaluate-{run}.json",
               {"environment": environment(), "precision": precision, "device": device(),
                "revisions": revisions(BASE, TEST)})
    log.info("%s: rouge-l %.2f, bleu %.2f, %.1f samples/s", run, metrics["rouge-l"], bleu, speed["samples_per_second"])


def load_model(p: dict, run: str, precision: str):
    model = load_base_model(p, quantized=parse_run(run)[0] == "qlora", precision=precision)
    if run != "base":
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, Path("models/adapters") / run)
    return model.eval()


def generate_answers(model, tokenizer, chats: list[list[dict]], batch_size: int, max_new_tokens: int):
    """Greedy answers in input order, and the speed they were produced at."""
    import torch
    from transformers import GenerationConfig

    prompts = [prompt_ids(tokenizer, chat) for chat in chats]
    # Longest first: batches of similar length waste less on padding, and OOM shows up at once.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    eos = model.generation_config.eos_token_id or tokenizer.eos_token_id
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                              pad_token_id=tokenizer.pad_token_id)
    stop = set(eos if isinstance(eos, list) else [eos])
    answers, generated = [None] * len(prompts), 0
    start = time.perf_counter()
    for i in tqdm(range(0, len(order), batch_size), desc="generating", unit="batch"):
        idx = order[i:i + batch_size]
        batch = tokenizer.pad({"input_ids": [prompts[j] for j in idx]}, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.generate(**batch, generation_config=config)
        for j, row in zip(idx, out[:, batch["input_ids"].shape[1]:].tolist()):
            n = next((k for k, t in enumerate(row) if t in stop), len(row))
            generated += n
            answers[j] = tokenizer.decode(row[:n], skip_special_tokens=True).strip()
    elapsed = time.perf_counter() - start
    return answers, {"samples_per_second": len(prompts) / elapsed, "tokens_per_second": generated / elapsed,
                     "generation_seconds": elapsed}


if __name__ == "__main__":
    cli(main)
