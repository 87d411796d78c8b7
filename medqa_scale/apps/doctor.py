"""Will a training run work here? Checks it before hours of GPU are spent, and says what to change.

Run from the repository root:
    python -m medqa_scale.apps.doctor                          # this machine (or the card params hardware names)
    python -m medqa_scale.apps.doctor --method lora --gpu-memory-gb 16 --no-bf16   # planning for a T4
    python -m medqa_scale.apps.doctor --gpu-memory-gb 80 --disk-free-gb 200        # planning for an H100
    python -m medqa_scale.apps.doctor --presets-table          # every hardware x model preset: docs/presets.md's table
Reads:  params.yaml (--params), requirements.txt (--requirements), installed package versions,
        models/base (config and size, when it holds the model params name; else params model.arch),
        bench/measured.json (benchmarked tokens/s, if any), GPU or RAM, free disk; conf/ for the table.
Prints: one log line per check (packages, device, params, memory and hours per method, disk) marked
        ok / warn / FAIL, then the advice: param changes that make a failing run fit, each with its
        estimated total. Writes nothing. Exit status 1 if any check fails, else 0.
Memory and hours come from medqa_scale.train.memory: published approximations, good enough to tell a
16 GB card from an 80 GB one, not to the last GiB.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import shutil
from pathlib import Path

from medqa_scale.core.cli import run
from medqa_scale.train.memory import (ADAPTER_CHECKPOINT_BYTES, GiB, estimate_hours, fit, gib, lora_parameter_count,
                                parameter_counts, params_run_settings, planning_arch)
from medqa_scale.core.params import load_params, scale_size

log = logging.getLogger(__name__)

BASE_DIR = Path("models/base")
MEASURED = Path("bench/measured.json")  # written by bench/train_throughput.py --record


def training_precision(setting: str, *, cuda_available: bool, bf16_supported: bool) -> str:
    """`auto`: bf16 on GPUs that have it, fp16 on others, fp32 on CPU (as medqa_scale.model.device)."""
    if setting != "auto":
        return setting
    return ("bf16" if bf16_supported else "fp16") if cuda_available else "fp32"


def package_problems(requirements: Path) -> list[str]:
    """Each requirement whose package is missing or installed at a version its pin excludes."""
    from packaging.requirements import Requirement

    problems = []
    for line in requirements.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):  # comments, pip options
            continue
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue  # pinned for another platform or Python
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{req.name}: not installed, {req.specifier} pinned")
            continue
        if not req.specifier.contains(installed, prereleases=True):  # PEP 440: ==2.13.0 matches 2.13.0+cpu
            problems.append(f"{req.name}: {installed} installed, {req.specifier} pinned")
    return problems


# The checks: each returns (ok | warn | FAIL, one-line message, advice lines).

def check_packages(requirements: Path):
    if not requirements.exists():
        return "warn", f"{requirements} not found: run from the repository root", []
    problems = package_problems(requirements)
    return ("FAIL", "; ".join(problems), [f"pip install -r {requirements}"]) if problems \
        else ("ok", f"every pin in {requirements} is installed", [])


def check_device(setting: str, precision: str, cuda: bool, bf16: bool, simulated: bool, methods: list[str]):
    where = ("a simulated GPU" if simulated else "CUDA") + (" with bf16" if bf16 else " without bf16 (T4, V100)")
    if cuda and setting == "bf16" and not bf16:
        return "FAIL", f"precision: bf16 on {where}", ["set precision: auto (fp16 on this GPU)"]
    if cuda:
        return "ok", f"{where}; training in {precision}", []
    note = f"no CUDA: training will use {precision} on CPU (slow; fine for the embedded default)"
    qlora = "; QLoRA: bitsandbytes runs 4-bit on CPU, slowly, and paged optimizers fall back to adamw_torch"
    return "warn", note + (qlora if "qlora" in methods else ""), []


def check_params(params: dict):
    from medqa_scale.core.validation import validate

    problems = validate(params)
    return ("FAIL", "; ".join(problems), ["fix those keys in conf/, then recompose params.yaml with `dvc exp run`"]) \
        if problems else ("ok", "params are valid", [])


def base_is_current(params: dict) -> bool:
    """Whether models/base holds the model params name: it may still hold the embedded one after
    params switched to the study's, and that one's config would say everything fits."""
    provenance = BASE_DIR / "provenance.json"
    return (BASE_DIR / "config.json").exists() and (
        not provenance.exists() or json.loads(provenance.read_text())["source"] == params["model"]["source"])


def model_arch(params: dict) -> tuple[dict | None, str]:
    """The model's config.json fields (None when unknown), and where they came from: models/base
    when it holds the model params name, else params (model.arch of the model presets, or the
    embedded model's)."""
    if base_is_current(params):
        return json.loads((BASE_DIR / "config.json").read_text()), str(BASE_DIR / "config.json")
    model = params["model"]
    return planning_arch(params), ("params model.builtin" if model["source"] == "builtin"
                                   else model.get("preset") or model["repo_id"])


def check_memory(params: dict, arch: dict, method: str, precision: str, free: int, free_what: str):
    settings = params_run_settings(params, method, precision)
    est, advice = fit(arch, settings, free)
    parts = ", ".join(f"{k} {gib(v)}" for k, v in est.items() if k != "total")
    msg = (f"batch {settings['batch_size']}, checkpointing {'on' if settings['activation_checkpointing'] else 'off'}, "
           f"{precision}: needs ~{gib(est['total'])} ({parts}); {free_what} {gib(free)}")
    return ("FAIL" if advice else "ok"), msg, advice


def check_time(params: dict, arch: dict, method: str, measured: dict):
    """Hours of each run of the sweep (every scale of params), for this method."""
    tokens_per_second = measured_tokens_per_second(measured, params, method)
    hours = {str(s): estimate_hours(params, arch, method, scale_size(s), tokens_per_second)[0]
             for s in params["split"]["scales"]}
    basis = estimate_hours(params, arch, method, 1, tokens_per_second)[1]  # the same for every scale
    if None in hours.values():
        return "warn", f"no estimate: {basis} (set hardware, e.g. -S hardware=gpu_24gb)", []
    seeds = len(params["train"]["seeds"])
    each = ", ".join(f"{s} {h:.1f} h" for s, h in hours.items())
    return "ok", f"{each} per run ({basis}); {sum(hours.values()) * seeds:.1f} h for {seeds} seed(s)", []


def measured_tokens_per_second(measured: dict, params: dict, method: str) -> float | None:
    """The training benchmark's tokens/s for this hardware preset, model preset and method, if
    `bench/train_throughput.py --record` measured them (bench/measured.json)."""
    key = f"{params.get('hardware', {}).get('preset')}/{params['model'].get('preset')}/{method}"
    return measured.get(key, {}).get("tokens_per_second")


def check_disk(params: dict, arch: dict, methods: list[str], free: int):
    # A model already in models/base counts too: DVC copies each out into .dvc/cache, and a rerun
    # of download_model writes the new copy beside the old one.
    base = sum(f.stat().st_size for f in BASE_DIR.rglob("*") if f.is_file()) if base_is_current(params) \
        else sum(parameter_counts(arch)) * 2  # 16-bit safetensors
    # Every run keeps its checkpoints in models/checkpoints/<run>; the Trainer writes a new one before
    # it deletes the oldest, hence save_total_limit + 1.
    runs = len(methods) * len(params["split"]["scales"])
    checkpoint = lora_parameter_count(arch, params["lora"]["r"], params["lora"]["target_modules"]) * ADAPTER_CHECKPOINT_BYTES
    need = base + runs * (params["train"]["args"]["save_total_limit"] + 1) * checkpoint
    msg = f"needs ~{gib(need)} (model {gib(base)}, checkpoints of {runs} runs), {gib(free)} free"
    return ("FAIL", msg, [f"free {gib(need - free)} on this disk, or lower train.args.save_total_limit"]) \
        if need > free else ("ok", msg, [])


def _run_check(name: str, check, *args) -> tuple[bool, list[str]]:
    """Log one check's line; (whether it failed, its advice)."""
    try:
        status, msg, fixes = check(*args)
    except (KeyError, TypeError) as e:  # a key the params check reports as missing or of the wrong type
        status, msg, fixes = "warn", f"skipped: params lack {e} (see the params check)", []
    log.log({"ok": logging.INFO, "warn": logging.WARNING}.get(status, logging.ERROR), "%-4s %s: %s", status, name, msg)
    return status == "FAIL", [f"{name}: {fix}" for fix in fixes]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m medqa_scale.apps.doctor", description=__doc__.split("\n")[0])
    ap.add_argument("--method", choices=("lora", "qlora"), help="check this method only (default: params methods)")
    ap.add_argument("--gpu-memory-gb", type=float,
                    help="simulate a GPU with this much free memory, in GiB (default: the card params hardware names)")
    ap.add_argument("--no-bf16", action="store_true", help="the GPU has no bf16 (T4, V100)")
    ap.add_argument("--disk-free-gb", type=float, help="simulate this much free disk, in GiB")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--requirements", type=Path, default=Path("requirements.txt"))
    ap.add_argument("--skip-params-check", action="store_true", help="skip params validation, not the other checks")
    ap.add_argument("--presets-table", action="store_true",
                    help="print docs/presets.md's table of every hardware x model preset and method, and exit")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.presets_table:
        from medqa_scale.train.presets import presets_markdown

        print(presets_markdown(Path("conf")))  # noqa: T201 - the table is the output
        return
    import torch

    params = load_params(args.params)
    methods = [args.method] if args.method else list(params["methods"])
    card = args.gpu_memory_gb if args.gpu_memory_gb is not None else (params.get("hardware") or {}).get("gpu_memory_gb")
    simulated = card is not None
    cuda = simulated or torch.cuda.is_available()
    bf16 = not args.no_bf16 and (simulated or (cuda and torch.cuda.is_bf16_supported()))
    precision = training_precision(params["precision"], cuda_available=cuda, bf16_supported=bf16)
    if simulated:
        free, free_what = int(card * GiB), ("simulated GPU memory" if args.gpu_memory_gb is not None
                                            else f"the card of hardware={params['hardware'].get('preset')}")
    elif cuda:
        free, free_what = torch.cuda.mem_get_info()[0], "free GPU memory"
    else:
        import psutil

        free, free_what = psutil.virtual_memory().available, "no GPU, so compared with available RAM"

    outcomes = [_run_check("packages", check_packages, args.requirements),
                _run_check("device", check_device, params["precision"], precision, cuda, bf16, simulated, methods),
                _run_check("params", lambda: ("warn", "skipped (--skip-params-check)", []))
                if args.skip_params_check else _run_check("params", check_params, params)]
    try:
        arch, arch_from = model_arch(params)
    except (KeyError, TypeError) as e:
        arch, arch_from = None, f"(params lack {e})"
    if arch is None:
        outcomes.append(_run_check("memory", lambda: ("warn", f"unknown model {arch_from}: give model.arch (its "
                                                      "config.json fields, as the presets in conf/model/ do) or run "
                                                      "`dvc repro download_model`; skipped", [])))
    else:
        log.info("model: %s, %.1fM parameters", arch_from, sum(parameter_counts(arch)) / 1e6)
        outcomes += [_run_check(f"memory[{m}]", check_memory, params, arch, m, precision, free, free_what) for m in methods]
        measured = json.loads(MEASURED.read_text(encoding="utf-8")) if MEASURED.exists() else {}
        outcomes += [_run_check(f"time[{m}]", check_time, params, arch, m, measured) for m in methods]
        disk = int(args.disk_free_gb * GiB) if args.disk_free_gb is not None else shutil.disk_usage(".").free
        outcomes.append(_run_check("disk", check_disk, params, arch, methods, disk))
    for fix in (fix for _, fixes in outcomes for fix in fixes):
        log.info("advice: %s", fix)
    if any(failed for failed, _ in outcomes):
        raise SystemExit(1)


if __name__ == "__main__":
    run(main)
