"""The pieces the train stage hands to transformers' Trainer: the encoded data, the
TrainingArguments built from params, the DVCLive curves, and what a run cost."""

from __future__ import annotations

from pathlib import Path

from medqa_scale.chat import encode_example
from medqa_scale.device import device, peak_memory_mb


def encode_records(tokenizer, records: list[dict]):
    """A datasets.Dataset of input_ids / attention_mask / answer-only labels."""
    from datasets import Dataset

    return Dataset.from_list([encode_example(tokenizer, r["messages"]) for r in records])


def training_arguments(p: dict, method: str, precision: str, output_dir: Path):
    """TrainingArguments: params `train.args` as they are, plus what the pipeline sets itself."""
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


def dvclive_callback(directory: Path):
    from dvclive import Live
    from transformers.integrations import DVCLiveCallback

    # One directory per run; dvcyaml=None keeps DVCLive from rewriting dvc.yaml, and
    # save_dvc_exp=False from making an experiment inside `dvc repro`.
    return DVCLiveCallback(live=Live(dir=str(directory), dvcyaml=None, save_dvc_exp=False, report=None))


def train_metrics(trainer, result, model, n_train: int) -> dict:
    """Cost and outcome of a finished run, from the Trainer's state."""
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
