"""Stage train@<method>-<scale>-<seed>: fine-tune the base model with LoRA or QLoRA on one train subset.

Run:    dvc repro train@lora-2k-42  (or: python -m stages.train lora-2k-42); the seed is one of train.seeds
Reads:  models/base, data/split/train-<scale>.jsonl, data/split/dev.jsonl,
        data/params/quantization-<method>.json (4-bit settings for qlora, null for lora),
        params precision, model.trust_remote_code, model.chat_template_kwargs, lora, train.lr, train.kl_beta,
        train.padding_free, train.loss_chunk_tokens, train.attn_implementation, train.num_processes, train.tensorboard,
        train.args, train.method_args.<method>;
        undeclared, because they decide where or whether the run goes, not what it computes:
        device (where), hardware (the card the fit check compares with), preprocess.max_source_len and
        max_target_len (the fit check's sample length; the split files they shaped are deps) and
        model.preset, model.repo_id, model.source (the model's name in the fit check's message)
Writes: models/adapters/<run>/ (the adapter of the checkpoint with the best eval loss)
        dvclive/<run>/ (curves by optimizer step; steps.jsonl, one line per log: loss, lr, grad
        norm, real tokens/s, memory; tensorboard/ when train.tensorboard)
        metrics/train/<run>.json (training, eval and save seconds apart, real tokens/s, peak
        memory and what it measures, trainable parameters, best eval loss and step, resumed step)
        metrics/runinfo/train-<run>.json (library versions, hardware, resolved arguments, the chat
        template's arguments and the defaults taken for them)

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

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.core.params import load_params, method_args, parse_run
from medqa_scale.model.device import PeakMemory, device, keep_bitsandbytes_out, needs_bitsandbytes, pin_device, resolve_precision


def _bitsandbytes_needed(argv: list[str]) -> bool:
    """Whether this run needs bitsandbytes; a bad run name or params need it not: the stage reports them."""
    try:
        method = parse_run(argv[1])[0]
        train = load_params()["train"]
        return needs_bitsandbytes(method, method_args(train["args"], train["method_args"][method]).get("optim", "adamw_torch"))
    except Exception:  # noqa: BLE001
        return True


if __name__ == "__main__" and not _bitsandbytes_needed(sys.argv):  # before transformers and peft are imported
    keep_bitsandbytes_out()

from medqa_scale.core.durable import atomic_path, read_json, read_jsonl, remove_stale, write_json  # noqa: E402
from medqa_scale.core.runinfo import environment, revisions  # noqa: E402
from medqa_scale.model.chat_format import defaults_taken, resolve_template_kwargs  # noqa: E402
from medqa_scale.model.loading import add_trainable_adapter, load_base_model, save_adapter  # noqa: E402
from medqa_scale.train.cost import CostMeter, train_metrics, write_curves  # noqa: E402
from medqa_scale.train.memory import GiB, model_name, run_problem, run_settings  # noqa: E402
from medqa_scale.train.resume import (  # noqa: E402
    checkpoint_step, code_files, last_complete_checkpoint, mark_finished, prepare_resume, prior_cost, run_key, scratch_dir)
from medqa_scale.train.trainer import RegularisedTrainer, data_collator, encode_records, training_arguments  # noqa: E402

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
    args = method_args(p["train"]["args"], p["train"]["method_args"][method])
    check_fits(p, method, args, precision)  # now, not out of memory an hour in
    settings = training_settings(p, args, precision, seed)
    scratch = scratch_dir(CHECKPOINTS, name, run_key(files.inputs + code_files(sys.modules.values(), Path.cwd()), settings))
    if "LOCAL_RANK" not in os.environ:  # the launching process, not a torchrun worker
        remove_stale(*files.outputs)
        prepare_resume(scratch, name)
        if p["train"]["num_processes"] > 1:
            return launch_workers(name, p["train"]["num_processes"])
    train(p, method, args, seed, precision, files, scratch)


def check_fits(p: dict, method: str, args: dict, precision: str) -> None:
    """Stop before anything loads when the run cannot fit the card params `hardware` names or,
    on a GPU, this GPU's free memory: the estimate and advice of check_params and the doctor."""
    budgets = [(int(gb * GiB), f"the card of hardware={p['hardware']['preset'] or f'{gb} GB'}")
               for gb in [p["hardware"]["gpu_memory_gb"]] if gb]
    if device() == "cuda":
        import torch

        budgets.append((torch.cuda.mem_get_info()[0], "this GPU's free memory"))
    if not budgets:
        return
    pre = p["preprocess"]
    settings = run_settings(method, args, precision, max_source_len=pre["max_source_len"], max_target_len=pre["max_target_len"],
                            lora_r=p["lora"]["r"], lora_targets=p["lora"]["target_modules"],
                            loss_chunk_tokens=p["train"]["loss_chunk_tokens"])
    for free, where in budgets:
        problem = run_problem(read_json(BASE / "config.json"), settings, free, model_name(p["model"]), where)
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


def training_settings(p: dict, args: dict, precision: str, seed: int) -> dict:
    """Every param that changes the trained weights (and so the checkpoints' key)."""
    return {"seed": seed, "precision": precision, "trust_remote_code": p["model"]["trust_remote_code"],
            "chat_template_kwargs": p["model"]["chat_template_kwargs"], "lora": p["lora"], "lr": p["train"]["lr"], "kl_beta": p["train"]["kl_beta"],
            "padding_free": p["train"]["padding_free"], "num_processes": p["train"]["num_processes"],
            "loss_chunk_tokens": p["train"]["loss_chunk_tokens"], "attn_implementation": p["train"]["attn_implementation"],
            "args": args}


def launch_workers(name: str, n: int) -> None:
    log.info("training %s with %d processes (torchrun, DDP)", name, n)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "-m", "stages.train", name]
    if subprocess.run(cmd).returncode != 0:
        raise PipelineError(f"train@{name}: a worker failed; its message is above")


def train(p: dict, method: str, args: dict, seed: int, precision: str, files: Files, scratch: Path) -> None:
    from transformers import AutoTokenizer, set_seed

    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    kwargs = p["model"]["chat_template_kwargs"]
    train_set, dev_set = (encode_records(tokenizer, read_jsonl(f), kwargs) for f in (files.train, files.dev))
    model = load_model(p, method, precision)
    resume = last_complete_checkpoint(scratch)
    steps_log = scratch / "steps.jsonl"
    memory = PeakMemory().start()  # after the model loaded: on CPU, growth over the loaded model
    meter = CostMeter(steps_log, memory, prior=prior_cost(resume))
    trainer = RegularisedTrainer(
        model=model,
        args=training_arguments(args, lr=p["train"]["lr"], seed=seed, precision=precision, output_dir=scratch,
                                padding_free=p["train"]["padding_free"], num_processes=p["train"]["num_processes"]),
        train_dataset=train_set,
        eval_dataset=dev_set,
        data_collator=data_collator(tokenizer, p["train"]["padding_free"]),
        callbacks=[meter, *tensorboard(p["train"]["tensorboard"], scratch)],
        kl_beta=p["train"]["kl_beta"],
        loss_chunk_tokens=p["train"]["loss_chunk_tokens"],
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
                               "training_arguments": trainer.args.to_dict(),
                               "chat_template_kwargs": resolve_template_kwargs(tokenizer, p["model"]["chat_template_kwargs"]),
                               "chat_template_defaults_taken": defaults_taken(tokenizer, p["model"]["chat_template_kwargs"])})
    mark_finished(scratch, files.adapter)
    log.info("%s: best eval loss %.4f at step %s; %.1f s training, %.1f s eval, %.1f s saving, %.0f tokens/s",
             files.name, metrics["best_eval_loss"], metrics["best_step"], metrics["train_runtime_s"],
             metrics["eval_runtime_s"], metrics["save_runtime_s"], metrics["tokens_per_second"])


def load_model(p: dict, method: str, precision: str):
    """The base model, 4-bit for qlora, with a new LoRA adapter to train."""
    quantization = read_json(Path("data/params") / f"quantization-{method}.json")
    model = load_base_model(BASE, quantization=quantization, precision=precision,
                            trust_remote_code=p["model"]["trust_remote_code"], attn_implementation=p["train"]["attn_implementation"])
    args = method_args(p["train"]["args"], p["train"]["method_args"][method])
    return add_trainable_adapter(model, p["lora"], quantized=quantization is not None,
                                 gradient_checkpointing=args["activation_checkpointing"])


def tensorboard(enabled: bool, scratch: Path) -> list:
    if not enabled:
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
