"""Stage train@<method>-<scale>-<seed>: fine-tune the base model with LoRA or QLoRA on one train subset.

Run:    dvc repro train@lora-2k-42  (or: python -m stages.train lora-2k-42); the seed is one of train.seeds
Reads:  models/base, data/split/train-<scale>.jsonl, data/split/dev.jsonl,
        data/params/quantization-<method>.json (4-bit settings for qlora, null for lora),
        params precision, model.trust_remote_code, model.chat_template_kwargs, lora, train.lr, train.kl_beta,
        device (undeclared: where, not what), train.padding_free, train.num_processes, train.tensorboard,
        train.args, train.method_args.<method>, hardware (undeclared: the card the run is checked against,
        not what it computes)
Writes: models/adapters/<run>/ (the adapter of the checkpoint with the best eval loss)
        dvclive/<run>/ (curves by optimizer step; steps.jsonl, one line per log: loss, lr, grad
        norm, real tokens/s, memory; tensorboard/ when train.tensorboard)
        metrics/train/<run>.json (training, eval and save seconds apart, real tokens/s, peak
        memory and what it measures, trainable parameters, best eval loss and step, resumed step)
        metrics/runinfo/train-<run>.json (library versions, hardware, resolved arguments)

Checkpoints go to models/checkpoints/<run>-<key>/, outside DVC's outputs, where <key> hashes
everything that affects training. A rerun after a kill resumes from the last complete checkpoint
there; changed params or inputs give another key and start fresh. The checkpoints stay for
inspection after the run and are cleared when the stage runs again. With train.num_processes > 1 the stage relaunches itself under torchrun
(DDP; gloo on CPU) and only rank 0 writes outputs.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from medqa_scale.cli import PipelineError, run
from medqa_scale.device import PeakMemory, device, keep_bitsandbytes_out, pin_device, resolve_precision

if __name__ == "__main__":  # before transformers and peft are imported (training imports the Trainer)
    keep_bitsandbytes_out(sys.argv[1] if len(sys.argv) > 1 else "")  # where it is not needed

from medqa_scale.durable import atomic_path, read_json, read_jsonl, remove_stale, write_json  # noqa: E402
from medqa_scale.memory import GiB, model_name, run_problem, run_settings  # noqa: E402
from medqa_scale.modeling import add_trainable_adapter, load_base_model, save_adapter  # noqa: E402
from medqa_scale.params import load_params, parse_run  # noqa: E402
from medqa_scale.runinfo import environment, revisions  # noqa: E402
from medqa_scale.training import (  # noqa: E402
    COST, FINISHED, CostMeter, RegularisedTrainer, checkpoint_step, data_collator, encode_records, last_complete_checkpoint,
    method_args, run_key, scratch_dir, train_metrics, training_arguments, truncate_steps_log, write_curves)

log = logging.getLogger(__name__)

BASE = Path("models/base")
SPLIT = Path("data/split")
CHECKPOINTS = Path("models/checkpoints")


def main() -> None:
    name = sys.argv[1]
    method, scale, seed = parse_run(name)
    files = Files(name, method, scale)
    p = load_params()
    pin_device(p["device"])  # before anything touches CUDA
    precision = resolve_precision(p["precision"])
    check_fits(p, method, precision)  # now, not out of memory an hour in
    scratch = scratch_dir(CHECKPOINTS, name, run_key(files.inputs, training_settings(p, method, precision, seed)))
    if "LOCAL_RANK" not in os.environ:  # the launching process, not a torchrun worker
        remove_stale(*files.outputs)
        prepare_resume(scratch, name)
        if p["train"]["num_processes"] > 1:
            return launch_workers(name, p["train"]["num_processes"])
    train(p, method, seed, precision, files, scratch)


def check_fits(p: dict, method: str, precision: str) -> None:
    """Stop before anything loads when the run cannot fit the card params `hardware` names or,
    on a GPU, this GPU's free memory: the estimate and advice of check_params and the doctor."""
    budgets = [(int(gb * GiB), f"the card of hardware={p['hardware']['preset'] or f'{gb} GB'}")
               for gb in [p["hardware"]["gpu_memory_gb"]] if gb]
    if device() == "cuda":
        import torch

        budgets.append((torch.cuda.mem_get_info()[0], "this GPU's free memory"))
    for free, where in budgets:
        problem = run_problem(read_json(BASE / "config.json"), run_settings(p, method, precision), free, model_name(p), where)
        if problem:
            raise PipelineError(problem)


class Files:
    def __init__(self, name: str, method: str, scale: str):
        self.name = name
        self.train, self.dev = SPLIT / f"train-{scale}.jsonl", SPLIT / "dev.jsonl"
        self.quantization = Path("data/params") / f"quantization-{method}.json"  # what load_model reads
        self.adapter, self.curves = Path("models/adapters") / name, Path("dvclive") / name
        self.metrics, self.runinfo = Path("metrics/train") / f"{name}.json", Path("metrics/runinfo") / f"train-{name}.json"
        self.inputs = [BASE, self.train, self.dev, self.quantization]
        self.outputs = [self.adapter, self.curves, self.metrics, self.runinfo]


def training_settings(p: dict, method: str, precision: str, seed: int) -> dict:
    """Every param that changes the trained weights (and so the checkpoints' key)."""
    return {"seed": seed, "precision": precision, "trust_remote_code": p["model"]["trust_remote_code"],
            "lora": p["lora"], "lr": p["train"]["lr"], "kl_beta": p["train"]["kl_beta"],
            "padding_free": p["train"]["padding_free"], "num_processes": p["train"]["num_processes"],
            "args": method_args(p, method)}


def prepare_resume(scratch: Path, name: str) -> None:
    """Delete partly saved checkpoints and the step log past the last complete one; say where
    the run resumes. A run that finished (its outputs asked for again) starts over."""
    if (scratch / FINISHED).exists():
        shutil.rmtree(scratch)
    resume = last_complete_checkpoint(scratch, clean=True)
    if resume:
        step = checkpoint_step(resume)
        log.info("resuming %s from step %d (%s)", name, step, resume)
        truncate_steps_log(scratch / "steps.jsonl", step)
    else:
        (scratch / "steps.jsonl").unlink(missing_ok=True)


def launch_workers(name: str, n: int) -> None:
    log.info("training %s with %d processes (torchrun, DDP)", name, n)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "-m", "stages.train", name]
    if subprocess.run(cmd).returncode != 0:
        raise PipelineError(f"train@{name}: a worker failed; its message is above")


def train(p: dict, method: str, seed: int, precision: str, files: Files, scratch: Path) -> None:
    from transformers import AutoTokenizer, set_seed

    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    kwargs = p["model"]["chat_template_kwargs"]
    train_set, dev_set = (encode_records(tokenizer, read_jsonl(f), kwargs) for f in (files.train, files.dev))
    model = load_model(p, method, precision)
    resume = last_complete_checkpoint(scratch)
    steps_log = scratch / "steps.jsonl"
    memory = PeakMemory().start()  # after the model loaded: on CPU, growth over the loaded model
    meter = CostMeter(steps_log, memory, prior=read_json(resume / COST) if resume else None)
    trainer = RegularisedTrainer(
        model=model,
        args=training_arguments(p, method, precision, scratch, seed),
        train_dataset=train_set,
        eval_dataset=dev_set,
        data_collator=data_collator(tokenizer, p["train"]["padding_free"]),
        callbacks=[meter, *tensorboard(p, scratch)],
        kl_beta=p["train"]["kl_beta"],
    )
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    peak = memory.stop()
    if not trainer.is_world_process_zero():
        return
    with atomic_path(files.adapter, directory=True) as tmp:
        save_adapter(trainer.model, tmp)  # after load_best_model_at_end: the best checkpoint's adapter
    with atomic_path(files.curves, directory=True) as tmp:
        write_curves(tmp, trainer.state.log_history)
        shutil.copy(steps_log, tmp / "steps.jsonl")
        if (scratch / "tensorboard").exists():
            shutil.copytree(scratch / "tensorboard", tmp / "tensorboard")
    resumed_from = checkpoint_step(resume) if resume else 0
    metrics = train_metrics(trainer, model, len(train_set), meter.seconds, peak, memory.kind, resumed_from)
    write_json(files.metrics, {**metrics, "produced_on": produced_on(precision)})
    write_json(files.runinfo, {"environment": environment(), "precision": precision, "device": device(),
                               "revisions": revisions(BASE, files.train, files.dev),
                               "training_arguments": trainer.args.to_dict()})
    write_json(scratch / FINISHED, {"adapter": str(files.adapter)})  # kept to inspect; the next run starts over
    log.info("%s: best eval loss %.4f at step %s; %.1f s training, %.1f s eval, %.1f s saving, %.0f tokens/s",
             files.name, metrics["best_eval_loss"], metrics["best_step"], metrics["train_runtime_s"],
             metrics["eval_runtime_s"], metrics["save_runtime_s"], metrics["tokens_per_second"])


def load_model(p: dict, method: str, precision: str):
    """The base model, 4-bit for qlora, with a new LoRA adapter to train."""
    quantization = read_json(Path("data/params") / f"quantization-{method}.json")
    model = load_base_model(BASE, quantization=quantization, precision=precision,
                            trust_remote_code=p["model"]["trust_remote_code"])
    return add_trainable_adapter(model, p["lora"], quantized=quantization is not None,
                                 gradient_checkpointing=method_args(p, method)["activation_checkpointing"])


def tensorboard(p: dict, scratch: Path) -> list:
    if not p["train"]["tensorboard"]:
        return []
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return [TensorBoardCallback(SummaryWriter(log_dir=str(scratch / "tensorboard")))]


def produced_on(precision: str) -> str:
    """The base model and the hardware, for plot captions."""
    provenance = read_json(BASE / "provenance.json")
    model = provenance.get("repo_id") or f"{provenance['source']} model"
    hardware = environment()["hardware"]
    where = hardware.get("gpu") or f"CPU ({hardware['cpu_count']} cores)"
    return f"{model}, {precision} on {where}"


if __name__ == "__main__":
    run(main)
