"""Benchmark: training throughput of the project's setup against a plain Trainer + PEFT recipe.

Run:    python bench/train_throughput.py [--scale 1k] [--repeats 3]
        python bench/train_throughput.py --arch qwen2.5-3b [--layers 2] [--seq-len 512] [--record gpu_80gb]
Needs:  for the default mode, `dvc repro split` (the built-in model and a train subset).

Default mode: the same model (models/base), the same samples (data/split/train-<scale>.jsonl) and
the same hyperparameters (params.yaml: train.lr, lora, train.method_args.lora, one epoch),
trained by
  (a) baseline: transformers' Trainer with its own loss over every position's logits, random
      order, each batch padded to its longest sample;
  (b) ours: the train stage's setup (RegularisedTrainer: the loss from the answer tokens' logits
      only; train.padding_free and train.args as params.yaml sets them).
It prints real (non-padding) tokens/s of each, the median of --repeats runs, their ratio, and
the eval loss each reaches on data/split/dev.jsonl.

--arch qwen2.5-3b: Qwen2.5-3B-Instruct's architecture from its config with random weights, so
nothing is downloaded; LoRA and QLoRA (4-bit NF4) tokens/s and peak memory at --seq-len tokens
per sample, batch --batch, with activation checkpointing. On a GPU at full depth in bf16 (1024
tokens, batch 4); on CPU at --layers layers (default 2) in fp32 (128 tokens, batch 2), so that it
runs here. Each line also prints the doctor's memory estimate for the same settings
(medqa_scale.train.memory) and the measured/estimate ratio. --record <hardware preset> stores the
full-depth tokens/s in bench/measured.json, which the doctor's time estimate then uses.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medqa_scale.core.params import read_yaml  # noqa: E402

QWEN25_3B = {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
             "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
             "tie_word_embeddings": True, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1k")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", choices=["builtin", "qwen2.5-3b"], default="builtin")
    parser.add_argument("--layers", type=int, default=None, help="qwen2.5-3b depth (default: 36 on GPU, 2 on CPU)")
    parser.add_argument("--seq-len", type=int, default=None, help="default: 1024 on GPU, 128 on CPU")
    parser.add_argument("--batch", type=int, default=None, help="default: 4 on GPU, 2 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps after one warm-up (default: 5 on GPU, 2 on CPU)")
    parser.add_argument("--record", metavar="HARDWARE", default=None,
                        help="at full depth, record tokens/s in bench/measured.json for this hardware preset (gpu_80gb...)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.arch == "builtin":
        compare_setups(args.scale, args.repeats)
    else:
        architecture_costs(args.layers, args.seq_len, args.batch, args.steps, args.record)


# --- (a) against (b) on the built-in model ----------------------------------------------------------


def compare_setups(scale: str, repeats: int) -> None:
    from transformers import AutoTokenizer

    from medqa_scale.core.durable import read_jsonl
    from medqa_scale.train.trainer import encode_records

    p = read_yaml("params.yaml")
    tokenizer = AutoTokenizer.from_pretrained("models/base")
    train = encode_records(tokenizer, read_jsonl(f"data/split/train-{scale}.jsonl"))
    dev = encode_records(tokenizer, read_jsonl("data/split/dev.jsonl"))
    real_tokens = sum(len(ids) for ids in train["input_ids"])
    results = {"baseline": [], "ours": []}
    for _ in range(repeats):
        for setup in results:  # interleaved, so drift in the machine's speed hits both alike
            results[setup].append(train_once(setup, p, tokenizer, train, dev))
    print(f"{len(train)} samples, {real_tokens} real tokens, {repeats} runs each (median)")
    speed = {}
    for setup, runs in results.items():
        seconds = statistics.median(r[0] for r in runs)
        speed[setup] = real_tokens / seconds
        print(f"  {setup:8s} {seconds:7.2f} s  {speed[setup]:9.0f} real tokens/s  eval loss {runs[0][1]:.4f}")
    loss_gap = results["ours"][0][1] / results["baseline"][0][1] - 1
    print(f"ratio ours/baseline: {speed['ours'] / speed['baseline']:.2f} (goal 1.5); eval loss {loss_gap:+.2%} "
          "against the baseline (goal: at most +1%)")


def train_once(setup: str, p: dict, tokenizer, train, dev) -> tuple[float, float]:
    """(training seconds, eval loss) of one run from a fresh adapter."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer

    from medqa_scale.model.chat_format import IGNORE_INDEX
    from medqa_scale.model.loading import add_trainable_adapter, load_base_model
    from medqa_scale.core.params import method_args
    from medqa_scale.train.trainer import RegularisedTrainer, data_collator, training_arguments

    q = copy.deepcopy(p)
    q["train"]["args"].update(num_train_epochs=1, eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                              disable_tqdm=True, logging_steps=10**6)
    torch.manual_seed(q["seed"])
    model = load_base_model(Path("models/base"), quantization=None, precision="fp32", trust_remote_code=False)
    model = add_trainable_adapter(model, q["lora"], quantized=False, gradient_checkpointing=False)

    def arguments():
        train = q["train"]
        return training_arguments(method_args(train["args"], train["method_args"]["lora"]), lr=train["lr"], seed=q["seed"],
                                  precision="fp32", output_dir=Path("/tmp/bench-train"), padding_free=train["padding_free"],
                                  num_processes=train["num_processes"])

    padded = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    if setup == "baseline":
        q["train"]["args"].pop("train_sampling_strategy", None)  # random order
        q["train"]["padding_free"] = False
        trainer = Trainer(model=model, args=arguments(), train_dataset=train, data_collator=padded)
    else:
        trainer = RegularisedTrainer(model=model, args=arguments(), train_dataset=train, data_collator=data_collator(tokenizer, q["train"]["padding_free"]),
                                     kl_beta=q["train"]["kl_beta"])
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    loss = Trainer(model=model, args=trainer.args, eval_dataset=dev, data_collator=padded).evaluate()["eval_loss"]
    return seconds, loss


# --- Qwen2.5-3B's architecture ----------------------------------------------------------------------


def architecture_costs(layers: int | None, seq_len: int | None, batch: int | None, steps: int | None,
                       record: str | None = None) -> None:
    import torch

    on_gpu = torch.cuda.is_available()
    seq_len, batch, steps = seq_len or (1024 if on_gpu else 128), batch or (4 if on_gpu else 2), steps or (5 if on_gpu else 2)
    depth = layers or (QWEN25_3B["num_hidden_layers"] if on_gpu else 2)
    precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_gpu else "fp32"
    print(f"Qwen2.5-3B architecture, {depth} of 36 layers, random weights, {precision} on "
          f"{torch.cuda.get_device_name(0) if on_gpu else 'CPU'}; batch {batch} x {seq_len} tokens, {steps} steps")
    from medqa_scale.train.memory import estimate_training_memory

    p = read_yaml("params.yaml")
    measured = {}
    for method in ("lora", "qlora"):
        tokens_per_s, peak = lora_steps(method, depth, precision, seq_len, batch, steps)
        # The doctor's estimate for the same settings (the loss here is over every position's logits).
        est = estimate_training_memory({**QWEN25_3B, "num_hidden_layers": depth}, method=method, batch_size=batch,
                                       seq_len=seq_len, precision=precision, activation_checkpointing=True,
                                       lora_r=p["lora"]["r"], lora_targets=p["lora"]["target_modules"])["total"] / 2**20
        print(f"  {method:6s} {tokens_per_s:9.0f} tokens/s  peak memory {peak:8.0f} MB  estimate {est:8.0f} MB  "
              f"measured/estimate {peak / est:.2f}")
        measured[method] = {"tokens_per_second": tokens_per_s, "peak_memory_mb": peak, "estimate_mb": est,
                            "seq_len": seq_len, "batch": batch, "precision": precision}
    if record and depth == QWEN25_3B["num_hidden_layers"]:
        # The doctor's time estimate uses these tokens/s for hardware=<record> model=qwen2.5-3b.
        path = Path("bench/measured.json")
        table = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        table.update({f"{record}/qwen2.5-3b/{m}": v for m, v in measured.items()})
        path.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"recorded in {path} for hardware={record}")


def lora_steps(method: str, depth: int, precision: str, seq_len: int, batch: int, steps: int) -> tuple[float, float]:
    import tempfile

    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from medqa_scale.model.device import PeakMemory, torch_dtype
    from medqa_scale.model.loading import add_trainable_adapter, load_base_model

    p = read_yaml("params.yaml")
    config = Qwen2Config(**{**QWEN25_3B, "num_hidden_layers": depth})
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        Qwen2ForCausalLM(config).to(torch_dtype(precision)).save_pretrained(tmp)
        quantization = p["quantization"] if method == "qlora" else None
        model = load_base_model(Path(tmp), quantization=quantization, precision=precision, trust_remote_code=False)
    model = add_trainable_adapter(model, p["lora"], quantized=quantization is not None, gradient_checkpointing=True)
    model.activation_checkpointing_enable()
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW([w for w in model.parameters() if w.requires_grad], lr=1e-4)
    ids = torch.randint(0, QWEN25_3B["vocab_size"], (batch, seq_len), device=device)
    memory = PeakMemory().start()
    start = None
    for step in range(steps + 1):
        if step == 1:  # the first step warms up kernels and allocators
            start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return batch * seq_len * steps / seconds, memory.stop()


if __name__ == "__main__":
    main()
