"""Stage train@<method>-<scale>: fine-tune the base model with LoRA or QLoRA on one train subset.

Run:    dvc repro train@lora-2k     (or: python -m stages.train lora-2k)
Reads:  models/base, data/split/train-<scale>.jsonl, data/split/dev.jsonl,
        params seed, precision, model.trust_remote_code, lora, quantization, train
Writes: models/adapters/<run>/ (the adapter of the checkpoint with the best eval loss)
        dvclive/<run>/ (loss, eval loss and learning-rate curves)
        metrics/train/<run>.json (runtime, tokens/s, peak memory, trainable parameters, best eval loss)
        metrics/runinfo/train-<run>.json (library versions, hardware, resolved arguments)
Trainer checkpoints go to models/checkpoints/<run>/, outside DVC's outputs.

lora loads the base in the training precision; qlora loads it 4-bit NF4 with bitsandbytes
(params `quantization`, BitsAndBytesConfig fields). Both train the same LoraConfig (`lora`).
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from stages.atomic import atomic_path, read_jsonl, write_json
from stages.params import load_params, parse_run
from stages.modeling import BASE, load_base_model
from stages.runinfo import (cli, device, environment, peak_memory_mb, reset_peak_memory, resolve_precision,
                            revisions)

log = logging.getLogger(__name__)

SPLIT = Path("data/split")


def main() -> None:
    run = sys.argv[1]
    method, scale = parse_run(run)
    p = load_params()
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Trainer, set_seed

    set_seed(p["seed"])
    precision = resolve_precision(p["precision"])
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    train_set, dev_set = encode_split(tokenizer, SPLIT / f"train-{scale}.jsonl"), encode_split(tokenizer, SPLIT / "dev.jsonl")
    model = load_peft_model(p, method, precision)
    checkpoints = Path("models/checkpoints") / run
    shutil.rmtree(checkpoints, ignore_errors=True)  # a rerun starts fresh; resuming is a later feature
    trainer = Trainer(
        model=model,
        args=training_arguments(p, method, precision, checkpoints),
        train_dataset=train_set,
        eval_dataset=dev_set,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
        callbacks=[dvclive_callback(run)],
    )
    reset_peak_memory()
    result = trainer.train()
    with atomic_path(Path("models/adapters") / run, directory=True) as tmp:
        trainer.model.save_pretrained(tmp)  # after load_best_model_at_end: the best checkpoint's adapter
    metrics = train_metrics(trainer, result, model, len(train_set))
    write_json(Path("metrics/train") / f"{run}.json", metrics)
    write_json(Path("metrics/runinfo") / f"train-{run}.json",
               {"environment": environment(), "precision": precision, "device": device(),
                "revisions": revisions(BASE, SPLIT / f"train-{scale}.jsonl", SPLIT / "dev.jsonl"),
                "training_arguments": trainer.args.to_dict()})
    log.info("%s: best eval loss %.4f at step %s, %.1f s", run, metrics["best_eval_loss"], metrics["best_step"],
             metrics["train_runtime"])


def encode_split(tokenizer, path: Path):
    from datasets import Dataset

    from stages.formatting import encode_example

    return Dataset.from_list([encode_example(tokenizer, r["messages"]) for r in read_jsonl(path)])


def load_peft_model(p: dict, method: str, precision: str):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = load_base_model(p, quantized=method == "qlora", precision=precision)
    if method == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=p["train"]["args"]["activation_checkpointing"])
    model = get_peft_model(model, LoraConfig(**p["lora"]))
    trainable, total = model.get_nb_trainable_parameters()
    log.info("%s: %d trainable of %d parameters (%.3f%%)", method, trainable, total, 100 * trainable / total)
    return model


def training_arguments(p: dict, method: str, precision: str, output_dir: Path):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=float(p["train"]["lr"]),
        seed=p["seed"],
        data_seed=p["seed"],
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device() == "cpu",
        report_to="none",  # curves go through our own DVCLive callback, into dvclive/<run>
        include_num_input_tokens_seen="non_padding",
        **p["train"]["batch"][method],
        **p["train"]["args"],
    )


def dvclive_callback(run: str):
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    # One directory per run; dvcyaml=None keeps DVCLive from rewriting dvc.yaml, and
    # save_dvc_exp=False from making an experiment inside `dvc repro`.
    return DVCLiveCallback(live=Live(dir=f"dvclive/{run}", dvcyaml=None, save_dvc_exp=False, report=None))


def train_metrics(trainer, result, model, n_train: int) -> dict:
    runtime = result.metrics["train_runtime"]
    trainable, total = model.get_nb_trainable_parameters()
    return {
        "n_train": n_train,
        "train_runtime": runtime,
        "train_samples_per_second": result.metrics["train_samples_per_second"],
        "tokens_per_second": trainer.state.num_input_tokens_seen / runtime if runtime else 0.0,
        "peak_memory_mb": peak_memory_mb(),
        "trainable_params": trainable,
        "total_params": total,
        "best_eval_loss": trainer.state.best_metric,
        "best_step": int(trainer.state.best_global_step or 0),
        "global_steps": trainer.state.global_step,
        "train_loss": result.training_loss,
    }


if __name__ == "__main__":
    cli(main)
