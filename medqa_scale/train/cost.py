"""What a training run cost, how it went, and its curves.

- `CostMeter`: wall time of training steps, dev evaluation and checkpoint saving apart, real
  tokens/s, a per-step JSONL log, and a stop on a NaN or infinite loss;
- `train_metrics`: the cost and outcome of a finished run;
- `write_curves`: DVCLive curves from the Trainer's log history.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from transformers import TrainerCallback

from medqa_scale.core.cli import PipelineError
from medqa_scale.train.resume import mark_complete


class NonFiniteLoss(PipelineError):
    pass


class CostMeter(TrainerCallback):
    """Seconds spent in training steps, in dev evaluation and in checkpoint saving, apart.

    The Trainer calls on_step_end after each optimizer step, then evaluates (on_evaluate) and
    saves (on_save) when due, so the time between two marks belongs to exactly one of the
    three. Totals carried over from a resumed checkpoint (`prior`) are added, so a resumed
    run reports what the whole run cost. Each log becomes one line of `steps_log` (JSON
    Lines): loss, learning rate, grad norm, real tokens/s since the last log, memory.
    """

    def __init__(self, steps_log: Path, memory, prior: dict | None = None):
        self.seconds = {"train": 0.0, "eval": 0.0, "save": 0.0, **(prior or {}).get("seconds", {})}
        self.steps_log, self.memory = steps_log, memory
        self._mark = self._last_log_time = time.perf_counter()
        self._last_log_tokens = 0
        self._last_log_train = self.seconds["train"]

    def _lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] += now - self._mark
        self._mark = now

    def on_train_begin(self, args, state, control, **kwargs):
        self._mark = time.perf_counter()
        self._last_log_tokens = state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        self._lap("train")

    def on_evaluate(self, args, state, control, **kwargs):
        self._lap("eval")

    def on_save(self, args, state, control, **kwargs):
        self._lap("save")
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and checkpoint.is_dir():
            mark_complete(checkpoint, self.seconds, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        for key in ("loss", "grad_norm", "eval_loss"):
            if key in logs and not math.isfinite(logs[key]):
                raise NonFiniteLoss(
                    f"{key} became {logs[key]} at step {state.global_step}; the run is stopped and no adapter is "
                    "written. Likely causes: a learning rate too high (lower train.lr) or fp16 overflow "
                    "(set precision: bf16 on a GPU that has it, or fp32)")
        if not state.is_world_process_zero:
            return
        record = {"step": state.global_step, "epoch": state.epoch,
                  **{k: v for k, v in logs.items() if isinstance(v, (int, float))}}
        if "loss" in logs:
            seconds = self.seconds["train"] - self._last_log_train
            tokens = state.num_input_tokens_seen - self._last_log_tokens
            record["tokens_per_second"] = tokens / seconds if seconds > 0 else 0.0
            record["memory_mb"] = self.memory.mb()
            self._last_log_train, self._last_log_tokens = self.seconds["train"], state.num_input_tokens_seen
        with self.steps_log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")


def write_curves(directory: Path, log_history: list[dict]) -> None:
    """DVCLive curves of a run from the Trainer's log history, by optimizer step: train/loss,
    eval/loss, learning_rate, grad_norm, epoch (and kl_to_base). Written once at the end, from
    the history a resumed Trainer restores, so a resumed run's curves are whole."""
    from dvclive import Live

    names = {"loss": "train/loss", "eval_loss": "eval/loss", "learning_rate": "learning_rate",
             "grad_norm": "grad_norm", "epoch": "epoch", "kl_to_base": "train/kl_to_base"}
    epochs_logged = set()  # a train and an eval entry may share a step; its epoch is one row
    with Live(dir=str(directory), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        for entry in log_history:
            if "step" not in entry or not any(k in entry for k in ("loss", "eval_loss")):
                continue
            live.step = entry["step"]
            for key, name in names.items():
                if key in entry and not (key == "epoch" and entry["step"] in epochs_logged):
                    live.log_metric(name, entry[key])
            epochs_logged.add(entry["step"])


def train_metrics(trainer, model, n_train: int, seconds: dict, peak_mb: float, memory_kind: str,
                  resumed_from: int) -> dict:
    """Cost and outcome of a finished run. train_runtime_s counts training steps only; the
    dev evaluations and checkpoint saves are timed apart."""
    state = trainer.state
    trainable, total = model.get_nb_trainable_parameters()
    return {
        "n_train": n_train,
        "train_runtime_s": seconds["train"],
        "eval_runtime_s": seconds["eval"],
        "save_runtime_s": seconds["save"],
        "tokens_per_second": state.num_input_tokens_seen / seconds["train"] if seconds["train"] else 0.0,
        "real_tokens": state.num_input_tokens_seen,
        "peak_memory_mb": peak_mb,
        "peak_memory_kind": memory_kind,
        "trainable_params": trainable,
        "total_params": total,
        "best_eval_loss": state.best_metric,
        "best_step": int(state.best_global_step or 0),
        "global_steps": state.global_step,
        "train_loss": next((e["train_loss"] for e in reversed(state.log_history) if "train_loss" in e), None),
        "resumed_from_step": resumed_from,
        "stopped_early": state.global_step < state.max_steps,
    }
