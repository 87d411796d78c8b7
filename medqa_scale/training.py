"""The pieces the train stage hands to transformers' Trainer, and what a run cost.

- the encoded data, batched with padding or padding-free (each batch one row, position ids
  restarting per sample: transformers then keeps attention inside each sample);
- TrainingArguments from params (`train.args`, overridden per method by `train.method_args`);
- `RegularisedTrainer`: the loss on answer tokens, computed from their logits alone, plus
  `train.kl_beta` x KL(base || tuned), the base being the same model with its adapter off;
- `CostMeter`: wall time of training steps, dev evaluation and checkpoint saving apart, real
  tokens/s, a per-step JSONL log, and a stop on a NaN or infinite loss;
- a resumable scratch directory per run, keyed by everything that affects training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from pathlib import Path

from transformers import Trainer, TrainerCallback

from medqa_scale.chat_format import IGNORE_INDEX, encode_examples
from medqa_scale.cli import PipelineError
from medqa_scale.device import device

log = logging.getLogger(__name__)

COMPLETE = "complete.json"  # written into a checkpoint once the Trainer has finished saving it
COST = "cost.json"  # the cost meter's totals, saved with every checkpoint
FINISHED = "finished.json"  # in a run's scratch directory once its adapter is written


def encode_records(tokenizer, records: list[dict], template_kwargs: dict | None = None):
    """A datasets.Dataset of input_ids / attention_mask / answer-only labels, rendered with the
    chat template's `template_kwargs` (params model.chat_template_kwargs)."""
    from datasets import Dataset

    return Dataset.from_list(encode_examples(tokenizer, [r["messages"] for r in records], template_kwargs))


def data_collator(tokenizer, padding_free: bool):
    """Padding-free: each batch becomes one row whose position ids restart at every sample, and
    the first label of each sample is masked, so no sample attends to or predicts across another.
    Otherwise each sample is padded to the batch's longest."""
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if padding_free:
        return _WithoutCache(DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX))
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)


class _WithoutCache:
    """Adds use_cache=False to every batch: transformers tells packed samples apart by their
    position ids only when no KV cache is made, otherwise they attend across each other
    (a test compares packed and padded losses)."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, features):
        return {**self.collate(features), "use_cache": False}


def method_args(p: dict, method: str) -> dict:
    """TrainingArguments fields of one method: `train.args`, overridden by `train.method_args.<method>`."""
    return {**p["train"]["args"], **p["train"]["method_args"][method]}


def training_arguments(p: dict, method: str, precision: str, output_dir: Path, seed: int):
    """TrainingArguments: the method's params as they are, plus what the pipeline sets itself;
    `seed` is the run's own (one of train.seeds): adapter init, data order and dropout."""
    from transformers import TrainingArguments

    args = method_args(p, method)
    if device() == "cpu" and _needs_cuda(args.get("optim", "")):
        log.info("optimizer %s needs CUDA (bitsandbytes); on CPU this run uses adamw_torch instead", args["optim"])
        args["optim"] = "adamw_torch"
    return TrainingArguments(
        output_dir=str(output_dir),
        learning_rate=float(p["train"]["lr"]),
        seed=seed,
        data_seed=seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device() == "cpu",
        report_to="none",  # curves are written from the Trainer's log history, see write_curves
        logging_nan_inf_filter=False,  # a NaN loss must reach CostMeter, not be averaged away
        # Padding-free rows carry no attention mask: every token is a real one.
        include_num_input_tokens_seen="all" if p["train"]["padding_free"] else "non_padding",
        ddp_backend="gloo" if device() == "cpu" and p["train"]["num_processes"] > 1 else None,
        **args,
    )


def _needs_cuda(optim: str) -> bool:
    return optim.startswith("paged_") or "8bit" in optim


# --- the loss -------------------------------------------------------------------------------------


class RegularisedTrainer(Trainer):
    """A Trainer whose training loss is the mean cross-entropy over answer tokens, computed from
    those tokens' logits only, plus `kl_beta` x the mean KL(p_base || p_tuned) over them.

    The prompt's logits are never materialised: at 152k vocabulary and 8 x 1024 tokens they
    would take 5 GB in fp32 for nothing, since their labels are masked. The reference for the KL
    is the model itself with its adapter disabled (PEFT), so no second copy is loaded. With
    kl_beta 0 the loss is exactly the Trainer's own. Evaluation uses the Trainer's own loss.
    """

    def __init__(self, *args, kl_beta: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.kl_beta = kl_beta
        self._kl: list[float] = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training or return_outputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        import torch

        labels = inputs["labels"]
        targets = labels[:, 1:]
        positions = targets != IGNORE_INDEX  # logits at t predict the token at t + 1
        keep = torch.nonzero(positions.any(0)).flatten()  # sequence positions whose logits are needed
        forward = {k: v for k, v in inputs.items() if k != "labels"}
        hidden = model(**forward, logits_to_keep=keep, output_hidden_states=False).logits  # (batch, kept, vocab)
        mask = positions[:, keep]
        logits = hidden[mask].float()
        gold = targets[:, keep][mask]
        n = num_items_in_batch if num_items_in_batch is not None else mask.sum()
        loss = torch.nn.functional.cross_entropy(logits, gold, reduction="sum") / n
        if self.kl_beta > 0:
            with torch.no_grad(), self.accelerator.unwrap_model(model).disable_adapter():
                base = model(**forward, logits_to_keep=keep).logits[mask].float()
            kl = answer_kl(base, logits)
            self._kl.append(kl.item())
            loss = loss + self.kl_beta * kl * mask.sum() / n
        if self.args.average_tokens_across_devices and self.model_accepts_loss_kwargs and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as the Trainer does for its own loss
        return loss

    def log(self, logs: dict, *args, **kwargs):
        if self._kl and "loss" in logs:
            logs["kl_to_base"] = sum(self._kl) / len(self._kl)
            self._kl.clear()
        super().log(logs, *args, **kwargs)


def answer_kl(base_logits, tuned_logits):
    """Mean over tokens of KL(p_base || p_tuned), from (tokens, vocab) logits."""
    import torch.nn.functional as F

    base = F.log_softmax(base_logits, dim=-1)
    return F.kl_div(F.log_softmax(tuned_logits, dim=-1), base, log_target=True, reduction="batchmean")


# --- cost, progress and failure --------------------------------------------------------------------


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
            (checkpoint / COST).write_text(json.dumps({"seconds": self.seconds}))
            (checkpoint / COMPLETE).write_text(json.dumps({"step": state.global_step}))

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


# --- resuming ---------------------------------------------------------------------------------------


def run_key(files: list[Path], settings: dict) -> str:
    """A short hash of everything that affects training: the settings and the input files'
    contents (large files by size and their first and last MiB: the base model's weights are
    gigabytes, and a changed download changes those too)."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in files:
        for f in sorted(p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()):
            h.update(str(f.relative_to(path.parent)).encode())
            size = f.stat().st_size
            h.update(str(size).encode())
            with f.open("rb") as stream:
                h.update(stream.read(2**20))
                if size > 2**21:
                    stream.seek(-(2**20), 2)
                    h.update(stream.read())
    return h.hexdigest()[:16]


def scratch_dir(root: Path, run: str, key: str) -> Path:
    """`root/<run>-<key>`, after removing the run's directories of other keys: a changed param
    or input starts fresh."""
    for stale in root.glob(f"{run}-*"):
        if stale.name != f"{run}-{key}" and stale.name[len(run) + 1:].isalnum():
            shutil.rmtree(stale, ignore_errors=True)
    return root / f"{run}-{key}"


def last_complete_checkpoint(directory: Path, clean: bool = False) -> Path | None:
    """The checkpoint with the highest step that the Trainer finished saving. `clean` deletes
    the partial ones (a kill during a save), so the Trainer's own rotation never counts them."""
    complete = None
    for checkpoint in sorted(directory.glob("checkpoint-*"), key=checkpoint_step):
        if (checkpoint / COMPLETE).exists():
            complete = checkpoint
        elif clean:
            shutil.rmtree(checkpoint, ignore_errors=True)
    return complete


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step of a Trainer checkpoint directory (checkpoint-<step>)."""
    return int(checkpoint.name.split("-")[1])


def truncate_steps_log(steps_log: Path, step: int) -> None:
    """Keep the log lines up to `step`: a resumed run logs the later steps again."""
    if steps_log.exists():
        lines = [line for line in steps_log.read_text(encoding="utf-8").splitlines() if json.loads(line)["step"] <= step]
        steps_log.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# --- outputs --------------------------------------------------------------------------------------


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
