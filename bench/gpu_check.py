"""The GPU check: what a lent GPU must confirm, in one run of at most 8 minutes, with one table.

Run:    bash bench/gpu_check.sh            on the GPU machine (no internet, no DVC, no hub)
        bash bench/gpu_check.sh --dry-run  anywhere, on CPU at toy size (tests/test_gpu_check.py runs it)

It checks, each step timed and caught, so that one failure does not hide the others:
  1. environment   torch, CUDA device, bf16, and the packages the project needs that the machine
                   lacks (bench/gpu_wheels.txt lists the wheels to bring, at the versions pinned here)
  2. code paths    the built-in model (built here, from the seed, offline) trained a few steps by the
                   train stage's RegularisedTrainer and answering by the generate stage's batched
                   greedy code, in bf16 and fp16, LoRA and QLoRA (QLoRA needs bitsandbytes)
  3. 3B regime     bench/train_throughput.py --arch qwen2.5-3b at full depth: a plain Trainer + PEFT
                   against ours, LoRA and QLoRA, tokens/s and peak memory; --record stores ours in
                   bench/measured.json for the doctor's hours
  4. memory model  the doctor's estimate against that measured peak (issue 13's goal: within 20%)
It prints one table (check, result, figures) and writes it, with measured.json, to $OUT when set.
Dry run: fp32 on CPU, 2 training steps, the 3B benchmark at 1 layer of a toy-width config; it proves
the script runs end to end, not the figures.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODULES = {"bitsandbytes": "bitsandbytes", "datasets": "datasets", "peft": "peft", "ruamel.yaml": "ruamel.yaml",
           "pydantic": "pydantic", "accelerate": "accelerate"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: check that the script works")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="where the table and measured.json go (default $OUT)")
    args = parser.parse_args()
    os.chdir(ROOT)
    rows: list[tuple[str, str, str]] = []
    work = Path(tempfile.mkdtemp(prefix="gpu_check."))
    measured = work / "measured.json" if args.dry_run else ROOT / "bench/measured.json"
    start = time.perf_counter()
    env = step(rows, "environment", lambda: environment(args.dry_run))
    base = step(rows, "built-in base model", lambda: build_base(work / "base", args.dry_run))
    if base:
        for precision in (["fp32"] if args.dry_run else ["bf16", "fp16"]):
            for method in ("lora", "qlora"):
                if method == "qlora" and env and "bitsandbytes" in env["missing"]:
                    rows.append((f"train + generate {method} {precision}", "SKIPPED", "bitsandbytes is not installed: bring "
                                 "its wheel (bench/gpu_wheels.txt)"))
                    continue
                step(rows, f"train + generate {method} {precision}", lambda m=method, p=precision: code_path(base, m, p, args.dry_run))
        output = step(rows, "3B regime: ours against plain Trainer + PEFT", lambda: regime(base, measured, args.dry_run, env))
        if output:
            memory_rows(rows, output, args.dry_run)
    rows.append(("total", "", f"{time.perf_counter() - start:.0f} s"))
    table = render(rows)
    print(table)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, "gpu_check.md").write_text(table + "\n", encoding="utf-8")
        if measured.exists():
            Path(args.out, "measured.json").write_text(measured.read_text(encoding="utf-8"), encoding="utf-8")
    return 1 if any(r[1] == "FAILED" for r in rows) else 0


def step(rows: list, name: str, fn):
    """Run one check; a row with its figures, or FAILED with the error's last line. Returns its value."""
    t = time.perf_counter()
    try:
        value = fn()
    except Exception as e:  # noqa: BLE001  (every failure is reported in the table, the others still run)
        traceback.print_exc()
        rows.append((name, "FAILED", f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:150] if str(e).strip() else ''}"))
        return None
    figures = value.get("figures", "") if isinstance(value, dict) else ""
    rows.append((name, "ok", f"{figures} ({time.perf_counter() - t:.0f} s)".strip()))
    return value


def environment(dry_run: bool) -> dict:
    import importlib.util

    import torch

    if not dry_run and not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: run with --dry-run on CPU")
    missing = sorted(name for name, module in MODULES.items() if importlib.util.find_spec(module) is None)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    optional = {m: importlib.util.find_spec(m) is not None for m in ("flash_attn", "liger_kernel")}
    return {"missing": missing, "figures": f"torch {torch.__version__}, {device}, bf16 {bf16}; missing: "
            f"{', '.join(missing) or 'none'}; optional: " + ", ".join(f"{k} {v}" for k, v in optional.items())}


def build_base(out: Path, dry_run: bool) -> Path:
    """The built-in model, from the seed, with fewer pre-training steps: only its code paths are checked."""
    from medqa_scale.builtin.model import build_and_save
    from medqa_scale.core.params import read_yaml

    p = read_yaml("params.yaml")
    builtin = {**p["model"]["builtin"], "pretrain": {**p["model"]["builtin"]["pretrain"], "steps": 2 if dry_run else 20}}
    out.mkdir(parents=True)
    build_and_save(builtin, p["seed"], out)
    return out


def code_path(base: Path, method: str, precision: str, dry_run: bool) -> dict:
    import torch
    from transformers import AutoTokenizer

    from medqa_scale.builtin.corpus import generate_pairs
    from medqa_scale.core.params import method_args, read_yaml
    from medqa_scale.evaluate.generation import generate_answers, generation_config
    from medqa_scale.model.chat_format import to_messages
    from medqa_scale.model.loading import add_trainable_adapter, load_base_model
    from medqa_scale.train.trainer import RegularisedTrainer, data_collator, encode_records, training_arguments

    p = read_yaml("params.yaml")
    system = p["preprocess"]["system_prompt"]
    tokenizer = AutoTokenizer.from_pretrained(base)
    pairs = generate_pairs(40, seed=p["seed"])
    train = encode_records(tokenizer, [{"messages": to_messages(r["question"], r["answer"], system)} for r in pairs[:32]])
    quantization = p["quantization"] if method == "qlora" else None
    model = load_base_model(base, quantization=quantization, precision=precision, trust_remote_code=False)
    fields = method_args(p["train"]["args"], p["train"]["method_args"][method])
    model = add_trainable_adapter(model, p["lora"], quantized=quantization is not None,
                                  gradient_checkpointing=bool(fields.get("activation_checkpointing")))
    fields.update(per_device_train_batch_size=8, gradient_accumulation_steps=1, max_steps=2 if dry_run else 4,
                  eval_strategy="no", save_strategy="no", load_best_model_at_end=False, logging_steps=1, disable_tqdm=True)
    with tempfile.TemporaryDirectory() as tmp:
        args = training_arguments(fields, lr=1e-3, seed=p["seed"], precision=precision, output_dir=Path(tmp),
                                  padding_free=False, num_processes=1)
        trainer = RegularisedTrainer(model=model, args=args, train_dataset=train, data_collator=data_collator(tokenizer, False),
                                     kl_beta=p["train"]["kl_beta"])
        trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    if not losses or not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"training losses {losses}: not finite")
    model.eval()
    tokenizer.padding_side = "left"
    chats = [to_messages(r["question"], None, system) for r in pairs[32:]]
    e = p["evaluate"]
    answers, _ = generate_answers(model, tokenizer, chats, 8, generation_config(tokenizer, e["generation"], 16))
    if len(answers) != len(chats):
        raise RuntimeError(f"{len(answers)} answers to {len(chats)} questions")
    memory = f", peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MB" if torch.cuda.is_available() else ""
    return {"figures": f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, {len(answers)} answers{memory}"}


def regime(base: Path, measured: Path, dry_run: bool, env: dict | None) -> dict:
    import torch

    cmd = [sys.executable, "bench/train_throughput.py", "--arch", "qwen2.5-3b", "--base", str(base), "--lengths-from",
           "builtin", "--measured", str(measured)]
    if dry_run:
        cmd += ["--tiny", "--layers", "1", "--seq-len", "8", "--batch", "2", "--steps", "1", "--repeats", "1"]
    else:
        memory = torch.cuda.get_device_properties(0).total_memory / 2**30
        preset = "gpu_80gb" if memory >= 70 else "gpu_48gb" if memory >= 40 else "gpu_24gb"
        cmd += ["--repeats", "1", "--record", preset]  # one run each: the whole check must fit 8 minutes
    if env and "bitsandbytes" in env["missing"]:
        cmd += ["--methods", "lora"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    sys.stdout.write(out.stdout)
    if out.returncode:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    ratios = re.findall(r"(\w+)\s+ours/baseline: tokens/s ([\d.]+)x .*?peak memory ([\d.]+)x .*?eval loss ([-+\d.]+%)", out.stdout)
    if not ratios:
        raise RuntimeError("train_throughput printed no ratio")
    return {"stdout": out.stdout, "figures": "; ".join(f"{m}: tokens/s {t}x, peak memory {p}x, eval loss {e}" for m, t, p, e in ratios)}


def memory_rows(rows: list, output: dict, dry_run: bool) -> None:
    for method, ratio in re.findall(r"(\w+)\s+ours/baseline: .*measured/estimate ([\d.]+)", output["stdout"]):
        ok = 0.8 <= float(ratio) <= 1.2
        rows.append((f"doctor's memory estimate, {method}", "ok" if ok or dry_run else "OFF",
                     f"measured/estimate {ratio} (goal 0.8-1.2{'; toy sizes, not judged' if dry_run else ''})"))


def render(rows: list) -> str:
    lines = ["| check | result | figures |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
