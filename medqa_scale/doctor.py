"""Will a training run work here? Checks it before hours of GPU are spent, and says what to change.

Run from the repository root:
    python -m medqa_scale.doctor                          # this machine, every method in params.yaml
    python -m medqa_scale.doctor --method lora --gpu-memory-gb 16 --no-bf16   # planning for a T4
    python -m medqa_scale.doctor --gpu-memory-gb 80 --disk-free-gb 200        # planning for an H100
Reads:  params.yaml (--params), requirements.txt (--requirements), installed package versions,
        models/base (config and size, when it holds the model params name), GPU or RAM, free disk.
Prints: one log line per check (packages, device, params, memory per method, disk) marked
        ok / warn / FAIL, then the advice: param changes that make a failing run fit, each with its
        estimated total. Writes nothing. Exit status 1 if any check fails, else 0.
Memory figures come from published approximations (estimate_training_memory): good enough to tell
a 16 GB card from an 80 GB one, not to the last GiB.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import logging
import shutil
from pathlib import Path

from medqa_scale.cli import run
from medqa_scale.params import load_params

log = logging.getLogger(__name__)

GiB = 2**30
FIT_FRACTION = 0.9  # the rest is for allocator fragmentation and peaks the estimate misses
OVERHEAD_BYTES = 1 * GiB  # CUDA context (~0.4 GiB), cuBLAS workspaces, the caching allocator's slack
BYTES_PER_PARAM = {"bf16": 2, "fp16": 2, "fp32": 4}
# NF4: 4 bits a weight plus an absmax per block of 64, which double quantization stores in 8 bits
# with one fp32 constant per 256 blocks (QLoRA paper, section 3): 4 + 8/64 + 32/16384 bits.
NF4_BYTES_PER_PARAM = (4 + 8 / 64 + 32 / (64 * 256)) / 8
# A trainable LoRA parameter: fp32 weight, fp32 gradient, Adam's two fp32 moments. An 8-bit optimizer
# needs 10, but adapters are ~0.1% of the model: the upper bound costs nothing.
ADAPTER_TRAINING_BYTES = 16
ADAPTER_CHECKPOINT_BYTES = 12  # a checkpoint holds the fp32 adapter and both Adam moments
BASE_DIR = Path("models/base")
# Qwen2Config fields of the models the study names, for planning before models/base is downloaded.
KNOWN_ARCHS = {"Qwen/Qwen2.5-3B-Instruct": dict(
    hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
    num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)}


def linear_shapes(arch: dict) -> dict[str, tuple[int, int]]:
    """(in, out) features of one decoder layer's linear layers, by the module names LoRA targets."""
    h, inter = arch["hidden_size"], arch["intermediate_size"]
    kv = arch["num_key_value_heads"] * h // arch["num_attention_heads"]  # grouped-query attention: k, v are narrower
    return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
            "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}


def parameter_counts(arch: dict) -> tuple[int, int]:
    """(parameters of the decoder's linear layers, all others). QLoRA quantizes only the first:
    embeddings, an untied lm_head, norms and q/k/v biases stay 16-bit."""
    h, layers, shapes = arch["hidden_size"], arch["num_hidden_layers"], linear_shapes(arch)
    linear = layers * sum(i * o for i, o in shapes.values())
    embeddings = arch["vocab_size"] * h * (1 if arch["tie_word_embeddings"] else 2)
    per_layer = 2 * h + h + 2 * shapes["k_proj"][1]  # two RMSNorms, q/k/v biases
    return linear, embeddings + layers * per_layer + h


def lora_parameter_count(arch: dict, r: int, targets: list[str]) -> int:
    """r x (in + out) per targeted linear layer: the A (r x in) and B (out x r) matrices."""
    shapes = linear_shapes(arch)
    return arch["num_hidden_layers"] * sum(r * (i + o) for name, (i, o) in shapes.items() if name in targets)


def estimate_training_memory(arch: dict, *, method: str, batch_size: int, seq_len: int, precision: str,
                             activation_checkpointing: bool, lora_r: int, lora_targets: list[str],
                             answer_len: int | None = None) -> dict[str, int]:
    """Peak training memory in bytes, per component and `total`. `answer_len`: the answer tokens
    per sample whose logits the loss makes (the train stage skips the prompt's); default seq_len."""
    width = BYTES_PER_PARAM[precision]
    linear, other = parameter_counts(arch)
    weights = linear * NF4_BYTES_PER_PARAM + other * width if method == "qlora" else (linear + other) * width
    h, heads, layers, tokens = arch["hidden_size"], arch["num_attention_heads"], arch["num_hidden_layers"], batch_size * seq_len
    # Korthikanti et al. 2022, bytes per layer in 16-bit without recompute: s*b*h*(34 + 5*a*s/h). The
    # 5*a*s/h term is stored attention scores, softmax and dropout mask; fused SDPA kernels keep less,
    # so this is an upper bound. Checkpointing keeps each layer's 16-bit input (2*s*b*h), plus one
    # layer's full activations while that layer is recomputed.
    full_layer = tokens * h * (34 + 5 * heads * seq_len / h)
    activations = (layers * 2 * tokens * h + full_layer) if activation_checkpointing else layers * full_layer
    parts = {"weights": weights,
             "adapter_optimizer": lora_parameter_count(arch, lora_r, lora_targets) * ADAPTER_TRAINING_BYTES,
             "activations": activations * width / 2,
             # the loss upcasts the logits to fp32; softmax and its gradient need as much again
             "logits_loss": batch_size * (answer_len or seq_len) * arch["vocab_size"] * 4 * 2,
             "overhead": OVERHEAD_BYTES}
    parts = {k: int(v) for k, v in parts.items()}
    return {**parts, "total": sum(parts.values())}


def training_precision(setting: str, *, cuda_available: bool, bf16_supported: bool) -> str:
    """`auto`: bf16 on GPUs that have it, fp16 on others, fp32 on CPU (as medqa_scale.device)."""
    if setting != "auto":
        return setting
    return ("bf16" if bf16_supported else "fp16") if cuda_available else "fp32"


def gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB"


def _first_fit(reestimate, budget: float, method: str, options) -> tuple[int, bool, dict] | None:
    """The first (batch, checkpointing) of `options` whose estimate fits `budget`, with that estimate."""
    fits = ((b, c, reestimate(method=method, batch_size=b, activation_checkpointing=c)) for b, c in options)
    return next((fit for fit in fits if fit[2]["total"] <= budget), None)


def advise(estimate: dict, free_bytes: int, *, method: str, batch_size: int, activation_checkpointing: bool,
           reestimate) -> list[str]:
    """Changes that make a run fit when `estimate` exceeds FIT_FRACTION of `free_bytes`, cheapest first,
    each with its re-estimated total; [] when it fits. `reestimate(method=, batch_size=,
    activation_checkpointing=)` is estimate_training_memory with the other settings bound."""
    budget = FIT_FRACTION * free_bytes
    if estimate["total"] <= budget:
        return []
    key, lines = f"train.method_args.{method}", []
    after = lambda est: f"-> {gib(est['total'])} of {gib(free_bytes)}, " + (  # noqa: E731
        "fits" if est["total"] <= budget else "still too big")
    if not activation_checkpointing:  # ~30% more compute for the largest saving: activations dominate
        lines.append(f"set {key}.activation_checkpointing: true "
                     + after(reestimate(method=method, batch_size=batch_size, activation_checkpointing=True)))
    # Divisors only: batch x gradient_accumulation_steps, the effective batch, stays exactly the same.
    smaller = [b for b in range(batch_size - 1, 0, -1) if batch_size % b == 0]
    checkpointing = sorted({activation_checkpointing, True})  # as it is, then on
    fit = _first_fit(reestimate, budget, method, [(b, c) for c in checkpointing for b in smaller])
    if fit:
        b, ckpt, est = fit
        also = "" if ckpt == activation_checkpointing else f" (with {key}.activation_checkpointing: true)"
        lines.append(f"set {key}.per_device_train_batch_size: {b} and multiply its gradient_accumulation_steps "
                     f"by {batch_size // b}{also} {after(est)}")
    if method == "lora":  # keep the batch first, then the checkpointing
        fit = _first_fit(reestimate, budget, "qlora", [(b, c) for b in [batch_size, *smaller] for c in checkpointing])
        b, ckpt, est = fit or (1, True, reestimate(method="qlora", batch_size=1, activation_checkpointing=True))
        lines.append(f"train with QLoRA (--method qlora; methods: [qlora]) at per_device_train_batch_size: {b}, "
                     f"activation_checkpointing: {str(ckpt).lower()} {after(est)}")
    if not any(line.endswith("fits") for line in lines):
        lines.append("none of these fits: use a GPU with more memory, or lower preprocess.max_source_len/max_target_len")
    return lines


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
    from medqa_scale.validation import validate

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
    """The model's Qwen2Config fields (None when unknown), and where they came from."""
    model = params["model"]
    if base_is_current(params):
        return json.loads((BASE_DIR / "config.json").read_text()), str(BASE_DIR / "config.json")
    if model["source"] == "builtin":
        return {**model["builtin"]["arch"], "vocab_size": model["builtin"]["vocab_size"]}, "params model.builtin"
    return KNOWN_ARCHS.get(model["repo_id"]), model["repo_id"]


def check_memory(params: dict, arch: dict, method: str, precision: str, free: int, free_what: str):
    margs, shared = params["train"]["method_args"][method], params["train"]["args"]
    batch = margs["per_device_train_batch_size"]
    ckpt = margs.get("activation_checkpointing", shared["activation_checkpointing"])  # the method's value wins
    reestimate = functools.partial(
        estimate_training_memory, arch, precision=precision, lora_r=params["lora"]["r"],
        lora_targets=params["lora"]["target_modules"],
        seq_len=params["preprocess"]["max_source_len"] + params["preprocess"]["max_target_len"],
        answer_len=params["preprocess"]["max_target_len"])
    est = reestimate(method=method, batch_size=batch, activation_checkpointing=ckpt)
    parts = ", ".join(f"{k} {gib(v)}" for k, v in est.items() if k != "total")
    msg = (f"batch {batch}, checkpointing {'on' if ckpt else 'off'}, {precision}: needs ~{gib(est['total'])} "
           f"({parts}); {free_what} {gib(free)}")
    advice = advise(est, free, method=method, batch_size=batch, activation_checkpointing=ckpt, reestimate=reestimate)
    return ("FAIL" if advice else "ok"), msg, advice


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
    ap = argparse.ArgumentParser(prog="python -m medqa_scale.doctor", description=__doc__.split("\n")[0])
    ap.add_argument("--method", choices=("lora", "qlora"), help="check this method only (default: params methods)")
    ap.add_argument("--gpu-memory-gb", type=float, help="simulate a GPU with this much free memory, in GiB")
    ap.add_argument("--no-bf16", action="store_true", help="the GPU has no bf16 (T4, V100)")
    ap.add_argument("--disk-free-gb", type=float, help="simulate this much free disk, in GiB")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--requirements", type=Path, default=Path("requirements.txt"))
    ap.add_argument("--skip-params-check", action="store_true", help="skip params validation, not the other checks")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    params = load_params(args.params)
    methods = [args.method] if args.method else list(params["methods"])
    simulated = args.gpu_memory_gb is not None
    cuda = simulated or torch.cuda.is_available()
    bf16 = not args.no_bf16 and (simulated or (cuda and torch.cuda.is_bf16_supported()))
    precision = training_precision(params["precision"], cuda_available=cuda, bf16_supported=bf16)
    if simulated:
        free, free_what = int(args.gpu_memory_gb * GiB), "simulated GPU memory"
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
        outcomes.append(_run_check("memory", lambda: ("warn", f"unknown model {arch_from}: add its config to "
                                                      "KNOWN_ARCHS or run `dvc repro download_model`; skipped", [])))
    else:
        log.info("model: %s, %.1fM parameters", arch_from, sum(parameter_counts(arch)) / 1e6)
        outcomes += [_run_check(f"memory[{m}]", check_memory, params, arch, m, precision, free, free_what) for m in methods]
        disk = int(args.disk_free_gb * GiB) if args.disk_free_gb is not None else shutil.disk_usage(".").free
        outcomes.append(_run_check("disk", check_disk, params, arch, methods, disk))
    for fix in (fix for _, fixes in outcomes for fix in fixes):
        log.info("advice: %s", fix)
    if any(failed for failed, _ in outcomes):
        raise SystemExit(1)


if __name__ == "__main__":
    run(main)
