"""What a training run needs before it starts: peak memory and hours, as pure functions of the
params and the model's architecture (its config.json fields), and the changes that make a run
fit a card.

Used by check_params (against the card params `hardware` names, before anything is downloaded),
by the train stage (against the GPU it runs on) and by `python -m medqa_scale.apps.doctor`.
Memory figures come from published approximations: good enough to tell a 16 GB card from an 80 GB
one, not to the last GiB. Hours assume full-length samples (an upper bound) unless a benchmark
measured the tokens/s of that hardware, model and method.
"""

from __future__ import annotations

import math

from medqa_scale.core.params import method_args

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
LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Model FLOPs utilisation assumed where no benchmark measured the card: a tuned bf16 LoRA run keeps
# about a third of the tensor cores' peak busy; QLoRA dequantizes every weight on every pass.
UTILISATION = {"lora": 0.35, "qlora": 0.2}


def gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB"


def linear_shapes(arch: dict) -> dict[str, tuple[int, int]]:
    """(in, out) features of one decoder layer's linear layers, by the module names LoRA targets.
    Qwen3 sets head_dim apart from hidden_size / heads; Qwen2 derives it."""
    h, inter, heads = arch["hidden_size"], arch["intermediate_size"], arch["num_attention_heads"]
    head_dim = arch.get("head_dim") or h // heads
    q, kv = heads * head_dim, arch["num_key_value_heads"] * head_dim  # grouped-query attention: k, v are narrower
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}


def parameter_counts(arch: dict) -> tuple[int, int]:
    """(parameters of the decoder's linear layers, all others). QLoRA quantizes only the first:
    embeddings, an untied lm_head, norms and biases stay 16-bit."""
    h, layers, shapes = arch["hidden_size"], arch["num_hidden_layers"], linear_shapes(arch)
    linear = layers * sum(i * o for i, o in shapes.values())
    embeddings = arch["vocab_size"] * h * (1 if arch["tie_word_embeddings"] else 2)
    # Qwen2: two RMSNorms and q/k/v biases; Qwen3 (head_dim given): no biases, q/k RMSNorms per head.
    extra = 2 * arch["head_dim"] if arch.get("head_dim") else shapes["q_proj"][1] + 2 * shapes["k_proj"][1]
    return linear, embeddings + layers * (2 * h + extra) + h


def targets(target_modules: list[str] | str) -> list[str]:
    """The linear layers LoRA adapts: PEFT's `all-linear` is every one but the output layer."""
    return list(LINEAR_MODULES) if target_modules == "all-linear" else list(target_modules)


def lora_parameter_count(arch: dict, r: int, target_modules: list[str] | str) -> int:
    """r x (in + out) per targeted linear layer: the A (r x in) and B (out x r) matrices."""
    chosen = targets(target_modules)
    return arch["num_hidden_layers"] * sum(r * (i + o) for name, (i, o) in linear_shapes(arch).items() if name in chosen)


def estimate_training_memory(arch: dict, *, method: str, batch_size: int, seq_len: int, precision: str,
                             activation_checkpointing: bool, lora_r: int, lora_targets: list[str] | str,
                             answer_len: int | None = None, loss_chunk_tokens: int = 0) -> dict[str, int]:
    """Peak training memory in bytes, per component and `total`. `answer_len`: the answer tokens
    per sample whose logits the loss makes (the train stage skips the prompt's); default seq_len.
    `loss_chunk_tokens` (train.loss_chunk_tokens): at most that many tokens' logits at once."""
    width = BYTES_PER_PARAM[precision]
    linear, other = parameter_counts(arch)
    weights = linear * NF4_BYTES_PER_PARAM + other * width if method == "qlora" else (linear + other) * width
    h, heads, layers, tokens = arch["hidden_size"], arch["num_attention_heads"], arch["num_hidden_layers"], batch_size * seq_len
    # Korthikanti et al. 2022, bytes per layer in 16-bit without recompute: s*b*h*(34 + 5*a*s/h). The
    # 5*a*s/h term is stored attention scores, softmax and dropout mask; fused SDPA kernels keep less,
    # so this is an upper bound. Checkpointing keeps each layer's 16-bit input (2*s*b*h), plus one
    # layer's full activations while that layer is recomputed.
    full_layer = tokens * h * (34 + 5 * heads * seq_len / h)
    logit_tokens = batch_size * (answer_len or seq_len)
    if loss_chunk_tokens:
        logit_tokens = min(logit_tokens, loss_chunk_tokens)
    activations = (layers * 2 * tokens * h + full_layer) if activation_checkpointing else layers * full_layer
    parts = {"weights": weights,
             "adapter_optimizer": lora_parameter_count(arch, lora_r, lora_targets) * ADAPTER_TRAINING_BYTES,
             "activations": activations * width / 2,
             # the loss upcasts the logits to fp32; softmax and its gradient need as much again
             "logits_loss": logit_tokens * arch["vocab_size"] * 4 * 2,
             "overhead": OVERHEAD_BYTES}
    parts = {k: int(v) for k, v in parts.items()}
    return {**parts, "total": sum(parts.values())}


def run_settings(method: str, args: dict, precision: str, *, max_source_len: int, max_target_len: int,
                 lora_r: int, lora_targets, loss_chunk_tokens: int = 0) -> dict:
    """The estimate's settings of one method's run: `args` are its TrainingArguments fields as the
    train stage merges them (core.params.method_args), the lengths params preprocess's limits."""
    return dict(method=method, batch_size=args["per_device_train_batch_size"], precision=precision,
                activation_checkpointing=args["activation_checkpointing"],
                seq_len=max_source_len + max_target_len, answer_len=max_target_len, lora_r=lora_r, lora_targets=lora_targets,
                loss_chunk_tokens=loss_chunk_tokens)


def params_run_settings(params: dict, method: str, precision: str) -> dict:
    """run_settings as a whole params file sets them (planning: check_params and the doctor)."""
    train, pre = params["train"], params["preprocess"]
    return run_settings(method, method_args(train["args"], train["method_args"][method]), precision,
                        max_source_len=pre["max_source_len"], max_target_len=pre["max_target_len"],
                        lora_r=params["lora"]["r"], lora_targets=params["lora"]["target_modules"],
                        loss_chunk_tokens=train["loss_chunk_tokens"])


def _first_fit(reestimate, budget: float, method: str, options) -> tuple[int, bool, dict] | None:
    """The first (batch, checkpointing) of `options` whose estimate fits `budget`, with that estimate."""
    fits = ((b, c, reestimate(method=method, batch_size=b, activation_checkpointing=c)) for b, c in options)
    return next((fit for fit in fits if fit[2]["total"] <= budget), None)


def advise(estimate: dict, free_bytes: int, *, method: str, batch_size: int, activation_checkpointing: bool,
           reestimate, seq_len: int | None = None) -> list[str]:
    """Changes that make a run fit when `estimate` exceeds FIT_FRACTION of `free_bytes`, cheapest first,
    each with its re-estimated total; [] when it fits. `reestimate(method=, batch_size=,
    activation_checkpointing=)` is estimate_training_memory with the other settings bound; given
    the run's `seq_len`, shorter samples are the last resort."""
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
        shorter = [n for n in (seq_len // 2 ** k for k in range(1, 4)) if n >= 128] if seq_len else []
        fits = ((n, reestimate(method="qlora", batch_size=1, activation_checkpointing=True, seq_len=n, answer_len=n // 2))
                for n in shorter)
        n, est = next(((n, est) for n, est in fits if est["total"] <= budget), (None, None))
        lines.append(f"lower preprocess.max_source_len and max_target_len to {n // 2} each and train with QLoRA at "
                     f"batch 1 with checkpointing {after(est)}" if n else
                     "none of these fits: use a GPU with more memory, or lower preprocess.max_source_len/max_target_len")
    return lines


def fit(arch: dict, settings: dict, free_bytes: int) -> tuple[dict, list[str]]:
    """One run's estimate with `settings` (run_settings), and the advice when it does not fit."""
    reestimate = lambda **varied: estimate_training_memory(arch, **{**settings, **varied})  # noqa: E731
    est = reestimate()
    return est, advise(est, free_bytes, method=settings["method"], batch_size=settings["batch_size"],
                       activation_checkpointing=settings["activation_checkpointing"], reestimate=reestimate,
                       seq_len=settings["seq_len"])


def planning_arch(params: dict) -> dict | None:
    """The architecture params describe, for planning before models/base exists: the embedded
    model's, or model.arch (the model presets give it); None when params do not say."""
    model = params["model"]
    if model["source"] == "builtin":
        return {**model["builtin"]["arch"], "vocab_size": model["builtin"]["vocab_size"]}
    return model.get("arch")


def run_problem(arch: dict, settings: dict, free_bytes: int, model: str, where: str) -> str | None:
    """None when one run with `settings` fits `free_bytes`; else one message: what it needs, what
    `where` has, and the changes that make it fit."""
    est, advice = fit(arch, settings, free_bytes)
    if not advice:
        return None
    return (f"{model} with {settings['method'].upper()} needs ~{gib(est['total'])} at batch {settings['batch_size']}, "
            f"{settings['seq_len']} tokens, checkpointing {'on' if settings['activation_checkpointing'] else 'off'}; "
            f"{where} has {gib(free_bytes)}, {FIT_FRACTION:.0%} usable. What to change: " + "; ".join(advice))


def model_name(model: dict) -> str:
    """How messages name the model of params `model` (its preset, hub id, or the embedded one)."""
    return model.get("preset") or (model["repo_id"] if model["source"] != "builtin" else "the embedded model")


def card_problems(params: dict) -> list[str]:
    """Each method of params `methods` that does not fit the card params `hardware` names;
    [] when every run fits, or no card or architecture is given. Planning assumes 16-bit training
    (precision auto on a GPU), fp32 where params say so."""
    card, arch = (params.get("hardware") or {}).get("gpu_memory_gb"), planning_arch(params)
    if not card or arch is None:
        return []
    precision = "fp32" if params["precision"] == "fp32" else "bf16"
    where = f"the card of hardware={params['hardware'].get('preset') or f'{card} GB'}"
    found = (run_problem(arch, params_run_settings(params, m, precision), int(card * GiB), model_name(params["model"]), where)
             for m in params["methods"])
    return [problem for problem in found if problem]


def training_flops_per_token(arch: dict, seq_len: int, activation_checkpointing: bool) -> float:
    """FLOPs of one training token with frozen base weights: the forward pass (2 per weight, plus
    causal attention over seq_len), the backward for activations only (as much again: frozen
    weights need no weight gradients), and the forward once more under checkpointing."""
    linear, other = parameter_counts(arch)
    h = arch["hidden_size"]
    lm_head = arch["vocab_size"] * h
    attention = 2 * arch["num_hidden_layers"] * seq_len * linear_shapes(arch)["q_proj"][1]  # QK^T and AV, causal half
    forward = 2 * (linear + lm_head) + attention
    return forward * (3 if activation_checkpointing else 2)


def run_tokens(params: dict, method: str, n_train: int) -> tuple[int, int]:
    """(training tokens, eval tokens) of one run at full sample length: steps x effective batch,
    and the dev set at every evaluation (eval_steps, a ratio of the steps or a count)."""
    margs, args, pre = params["train"]["method_args"][method], params["train"]["args"], params["preprocess"]
    seq = pre["max_source_len"] + pre["max_target_len"]
    batch = margs["per_device_train_batch_size"] * margs["gradient_accumulation_steps"] * params["train"]["num_processes"]
    max_steps = method_args(args, margs).get("max_steps") or 0
    steps = max_steps if max_steps > 0 else math.ceil(n_train / batch) * args["num_train_epochs"]
    every = args.get("eval_steps") or steps
    evals = math.floor(1 / every) if every < 1 else math.floor(steps / every)
    return int(steps * batch * seq), int(evals * params["split"]["dev_size"] * seq)


def estimate_hours(params: dict, arch: dict, method: str, n_train: int, measured_tokens_per_second: float | None = None
                   ) -> tuple[float | None, str]:
    """Hours of one run's training (with its evaluations), and what the figure rests on: the
    benchmark's tokens/s where one was measured, else FLOPs at UTILISATION of the card's peak."""
    train_tokens, eval_tokens = run_tokens(params, method, n_train)
    if measured_tokens_per_second:
        return (train_tokens + eval_tokens / 3) / measured_tokens_per_second / 3600, "measured tokens/s"
    peak = params.get("hardware", {}).get("peak_tflops")
    if not peak:
        return None, "no peak_tflops for this hardware and no benchmark"
    settings = params_run_settings(params, method, "bf16")
    per_token = training_flops_per_token(arch, settings["seq_len"], settings["activation_checkpointing"])
    eval_per_token = training_flops_per_token(arch, settings["seq_len"], False) / 2  # forward only
    flops = train_tokens * per_token + eval_tokens * eval_per_token
    return flops / (peak * 1e12 * UTILISATION[method]) / 3600, f"FLOPs at {UTILISATION[method]:.0%} of {peak} TFLOPS"
