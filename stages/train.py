"""Stage train@<method>-<scale>: fine-tune the base model with LoRA or QLoRA on one train subset.

Run:    dvc repro train@lora-2k     (or: python -m stages.train lora-2k)
Reads:  models/base, data/split/train-<scale>.jsonl, data/split/dev.jsonl,
        data/params/quantization-<method>.json (4-bit settings for qlora, null for lora),
        params seed, precision, model.trust_remote_code, lora, train.lr, train.args,
        train.batch.<method>
Writes: models/adapters/<run>/ (the adapter of the checkpoint with the best eval loss)
        dvclive/<run>/ (loss, eval loss and learning-rate curves)
        metrics/train/<run>.json (runtime, tokens/s, peak memory, trainable parameters, best eval loss)
        metrics/runinfo/train-<run>.json (library versions, hardware, resolved arguments)
Trainer checkpoints go to models/checkpoints/<run>/, outside DVC's outputs.

lora loads the base in the training precision; qlora loads it 4-bit with bitsandbytes. Both
train the same LoraConfig (params `lora`).
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from medqa_scale.chat import IGNORE_INDEX
from medqa_scale.cli import run
from medqa_scale.device import device, reset_peak_memory, resolve_precision
from medqa_scale.durable import atomic_path, read_json, read_jsonl, remove_stale, write_json
from medqa_scale.modeling import add_trainable_adapter, load_base_model, save_adapter
from medqa_scale.params import load_params, parse_run
from medqa_scale.runinfo import environment, revisions
from medqa_scale.training import dvclive_callback, encode_records, train_metrics, training_arguments

log = logging.getLogger(__name__)

BASE = Path("models/base")
SPLIT = Path("data/split")


def main() -> None:
    name = sys.argv[1]
    method, scale = parse_run(name)
    train_file, dev_file = SPLIT / f"train-{scale}.jsonl", SPLIT / "dev.jsonl"
    adapter, curves = Path("models/adapters") / name, Path("dvclive") / name
    metrics_file, runinfo_file = Path("metrics/train") / f"{name}.json", Path("metrics/runinfo") / f"train-{name}.json"
    remove_stale(adapter, curves, metrics_file, runinfo_file)
    p = load_params()
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Trainer, set_seed

    set_seed(p["seed"])
    precision = resolve_precision(p["precision"])
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    train_set, dev_set = encode_records(tokenizer, read_jsonl(train_file)), encode_records(tokenizer, read_jsonl(dev_file))
    model = load_model(p, method, precision)
    checkpoints = Path("models/checkpoints") / name
    shutil.rmtree(checkpoints, ignore_errors=True)  # a rerun starts fresh; resuming is a later feature
    trainer = Trainer(
        model=model,
        args=training_arguments(p, method, precision, checkpoints),
        train_dataset=train_set,
        eval_dataset=dev_set,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX),
        callbacks=[dvclive_callback(curves)],
    )
    reset_peak_memory()
    result = trainer.train()
    with atomic_path(adapter, directory=True) as tmp:
        save_adapter(trainer.model, tmp)  # after load_best_model_at_end: the best checkpoint's adapter
    metrics = train_metrics(trainer, result, model, len(train_set))
    write_json(metrics_file, metrics)
    write_json(runinfo_file, {"environment": environment(), "precision": precision, "device": device(),
                              "revisions": revisions(BASE, train_file, dev_file),
                              "training_arguments": trainer.args.to_dict()})
    log.info("%s: best eval loss %.4f at step %s, %.1f s", name, metrics["best_eval_loss"], metrics["best_step"],
             metrics["train_runtime"])


def load_model(p: dict, method: str, precision: str):
    """The base model, 4-bit for qlora, with a new LoRA adapter to train."""
    quantization = read_json(Path("data/params") / f"quantization-{method}.json")
    model = load_base_model(BASE, quantization=quantization, precision=precision,
                            trust_remote_code=p["model"]["trust_remote_code"])
    return add_trainable_adapter(model, p["lora"], quantized=quantization is not None,
                                 gradient_checkpointing=p["train"]["args"]["activation_checkpointing"])


if __name__ == "__main__":
    run(main)
