"""Benchmark: training throughput of the project's setup against a plain Trainer + PEFT recipe.

Run:    python bench/train_throughput.py [--scale 1k] [--repeats 5]
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

--arch qwen2.5-3b: the study's regime. Qwen2.5-3B-Instruct's architecture from its config with
random weights (nothing is downloaded; its 151,936-token vocabulary), trained on samples whose
prompt and answer lengths are drawn from a data file (--lengths-from, default the built-in corpus's
data/split/train-1k.jsonl) and scaled to preprocess's limits (--seq-len: 512 + 512 on a GPU, as the
study's; 64 + 64 on CPU, where one step of the baseline takes seconds), with random token ids. The same samples, hyperparameters (params.yaml:
train.lr, lora, quantization, train.method_args.<method>) and batch go to (a) a plain Trainer + PEFT,
random order, padded to the longest in each batch, the Trainer's loss over every position's logits,
and (b) ours (RegularisedTrainer, train.padding_free and train.args as params.yaml sets them), for
LoRA and QLoRA (4-bit NF4). Each run is its own process (CPU memory is the process's growth), runs
interleave, and it prints the median of --repeats runs: real tokens/s and their ratio, peak memory
and its ratio, eval loss on a held-out batch (random tokens: about ln 151936 = 11.93 for both; it
shows both optimise the same thing), and the doctor's memory estimate for the same settings. On a
GPU at full depth in bf16; on CPU at --layers layers (default 2) in fp32. --record <hardware preset>
stores the full-depth tokens/s in bench/measured.json, which the doctor's time estimate then uses.
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
# --tiny: the same shape at toy size, so that a dry run checks the code paths in seconds.
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 4096}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1k")
    parser.add_argument("--repeats", type=int, default=None,
                        help="runs of each setup, interleaved (default: 5 on the built-in model, 3 for qwen2.5-3b)")
    parser.add_argument("--arch", choices=["builtin", "qwen2.5-3b"], default="builtin")
    parser.add_argument("--layers", type=int, default=None, help="qwen2.5-3b depth (default: 36 on GPU, 2 on CPU)")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="qwen2.5-3b: the prompt's and the answer's limit, as preprocess's (default: 512 on GPU, 64 on CPU)")
    parser.add_argument("--batch", type=int, default=None, help="qwen2.5-3b: samples per step (default 4)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps after one warm-up (default: 8 on GPU, 2 on CPU)")
    parser.add_argument("--record", metavar="HARDWARE", default=None,
                        help="at full depth, record tokens/s in bench/measured.json for this hardware preset (gpu_80gb...)")
    parser.add_argument("--lengths-from", default=None,
                        help="qwen2.5-3b: a data file in data/split's format whose prompt and answer lengths the samples "
                             "follow (default data/split/train-1k.jsonl, the built-in corpus)")
    parser.add_argument("--base", default="models/base", help="qwen2.5-3b: the tokenizer that measures the lengths")
    parser.add_argument("--measured", default="bench/measured.json", help="where --record writes")
    parser.add_argument("--methods", nargs="+", default=["lora", "qlora"], help="qwen2.5-3b: which methods")
    parser.add_argument("--tiny", action="store_true", help="qwen2.5-3b: a tiny config of the same shape (bench/gpu_check.py's dry run)")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # setup:method:weights, one run (internal)
    parser.add_argument("--precision", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.one:
        setup, method, weights = args.one.split(":", 2)
        print(json.dumps(one_run(setup, method, weights, args.precision, args.seq_len, args.batch, args.steps,
                                 args.lengths_from, args.base)))
    elif args.arch == "builtin":
        compare_setups(args.scale, args.repeats or 5)
    else:
        if args.tiny:
            QWEN25_3B.update(TINY)
        architecture_costs(args.layers, args.seq_len, args.batch, args.steps, args.record, args.repeats or 3, args.lengths_from,
                           args.base, args.measured, args.tiny, args.methods)


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
        each = ", ".join(f"{r[0]:.2f}" for r in runs)
        print(f"  {setup:8s} {seconds:7.2f} s  {speed[setup]:9.0f} real tokens/s  eval loss {runs[0][1]:.4f}  (runs: {each} s)")
    loss_gap = results["ours"][0][1] / results["baseline"][0][1] - 1
    # Each round's two runs sit side by side in time, so their ratio cancels the machine's drift (a
    # shared 2-core VM's runs of the same setup vary by a third); the ratio of the medians does not.
    paired = sorted(b[0] / o[0] for b, o in zip(results["baseline"], results["ours"]))
    print(f"ratio ours/baseline: {speed['ours'] / speed['baseline']:.2f} of the medians, "
          f"{statistics.median(paired):.2f} the median of each round's ratio (rounds: {', '.join(f'{r:.2f}' for r in paired)}; "
          f"goal: at least 1.1); eval loss {loss_gap:+.2%} against the baseline (goal: at most +1%)")


def train_once(setup: str, p: dict, tokenizer, train, dev, trainer_class=None) -> tuple[float, float]:
    """(training seconds, eval loss) of one run from a fresh adapter; `trainer_class` replaces
    RegularisedTrainer for ours (bench/length_grouping.py passes a diagnostic one)."""
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
        trainer = (trainer_class or RegularisedTrainer)(model=model, args=arguments(), train_dataset=train, kl_beta=q["train"]["kl_beta"],
                                                        data_collator=data_collator(tokenizer, q["train"]["padding_free"]))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    loss = Trainer(model=model, args=trainer.args, eval_dataset=dev, data_collator=padded).evaluate()["eval_loss"]
    return seconds, loss


# --- Qwen2.5-3B's architecture: the study's regime ----------------------------------------------------


def architecture_costs(layers: int | None, seq_len: int | None, batch: int | None, steps: int | None,
                       record: str | None = None, repeats: int = 3, lengths_from: str | None = None,
                       base: str = "models/base", measured: str = "bench/measured.json", tiny: bool = False,
                       methods: tuple = ("lora", "qlora")) -> None:
    """(a) plain Trainer + PEFT against (b) ours on Qwen2.5-3B's architecture with random weights, on
    samples whose prompt and answer lengths follow real data's, in the study's regime (152k vocabulary)."""
    import torch

    on_gpu = torch.cuda.is_available()
    limit, batch, steps = seq_len or (512 if on_gpu else 64), batch or 4, steps or (8 if on_gpu else 2)
    depth = layers or (QWEN25_3B["num_hidden_layers"] if on_gpu else 2)
    precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_gpu else "fp32"
    pairs = sample_lengths(lengths_from or "data/split/train-1k.jsonl", limit, batch * (steps + 1) + batch, 0, base)
    real = sum(a + b for a, b in pairs[:batch * (steps + 1)])
    print(f"Qwen2.5-3B architecture{' (--tiny: toy widths, vocabulary 4096)' if tiny else ''}, {depth} of 36 layers, random weights, {precision} on "
          f"{torch.cuda.get_device_name(0) if on_gpu else 'CPU'}; batch {batch}, prompts and answers up to {limit} + {limit} "
          f"tokens, lengths as in {lengths_from or 'data/split/train-1k.jsonl'} scaled to them; {steps} timed steps after "
          f"one warm-up; {repeats} runs each (median), each in its own process")
    import tempfile

    from transformers import Qwen2Config, Qwen2ForCausalLM

    from medqa_scale.core.params import method_args
    from medqa_scale.model.device import torch_dtype
    from medqa_scale.train.memory import estimate_training_memory

    p = read_yaml("params.yaml")
    results = {}
    weights = tempfile.TemporaryDirectory(prefix="bench-qwen2.5-3b.")
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(**{**QWEN25_3B, "num_hidden_layers": depth})).to(torch_dtype(precision)).save_pretrained(weights.name)
    for method in methods:
        runs = {"baseline": [], "ours": []}
        for _ in range(repeats):
            for setup in runs:  # interleaved, so drift in the machine's speed hits both alike
                runs[setup].append(one_run_in_subprocess(setup, method, weights.name, precision, limit, batch, steps,
                                                         lengths_from, base))
        med = {k: {m: statistics.median(r[m] for r in v) for m in ("seconds", "peak_mb")} | {"eval_loss": v[0]["eval_loss"],
               "padding": v[0]["padding"]} for k, v in runs.items()}
        tokens = real - sum(a + b for a, b in pairs[:batch])  # the warm-up step is not timed
        # The doctor's estimate for ours at the longest batch it met (memory peaks there): padded to its
        # longest sample, logits for its answer tokens only.
        fields = method_args(p["train"]["args"], p["train"]["method_args"][method])
        longest = max(range(steps + 1), key=lambda k: max(a + b for a, b in pairs[k * batch:(k + 1) * batch]))
        chunk = pairs[longest * batch:(longest + 1) * batch]
        est = estimate_training_memory({**QWEN25_3B, "num_hidden_layers": depth}, method=method, batch_size=batch,
                                       seq_len=max(a + b for a, b in chunk), precision=precision,
                                       activation_checkpointing=bool(fields.get("activation_checkpointing")),
                                       answer_len=round(sum(b for _, b in chunk) / batch), lora_r=p["lora"]["r"],
                                       lora_targets=p["lora"]["target_modules"],
                                       loss_chunk_tokens=p["train"]["loss_chunk_tokens"])
        # On CPU the measured peak is the growth over the loaded model (model.device.PeakMemory): compare
        # it with the estimate without the weights.
        est = (est["total"] - (0 if on_gpu else est["weights"])) / 2**20
        for setup, m in med.items():
            print(f"  {method:5s} {setup:8s} {tokens / m['seconds']:9.0f} real tokens/s  peak memory {m['peak_mb']:8.0f} MB  "
                  f"eval loss {m['eval_loss']:.4f}  (padding: {m['padding']:.0%} of random batches)" if setup == "baseline" else
                  f"  {method:5s} {setup:8s} {tokens / m['seconds']:9.0f} real tokens/s  peak memory {m['peak_mb']:8.0f} MB  "
                  f"eval loss {m['eval_loss']:.4f}")
        ratio = med["baseline"]["seconds"] / med["ours"]["seconds"]
        paired = statistics.median(b["seconds"] / o["seconds"] for b, o in zip(runs["baseline"], runs["ours"]))
        memory = med["ours"]["peak_mb"] / med["baseline"]["peak_mb"]
        print(f"  {method:5s} ours/baseline: tokens/s {ratio:.2f}x ({paired:.2f}x the median of each round's ratio; goal >= 1.3 "
              f"at 2 layers), peak memory {memory:.2f}x "
              f"(goal <= 0.7); eval loss {med['ours']['eval_loss'] / med['baseline']['eval_loss'] - 1:+.2%}; "
              f"doctor's estimate {est:.0f} MB{'' if on_gpu else ' without the weights'}, measured/estimate "
              f"{med['ours']['peak_mb'] / est:.2f}")
        results[method] = {"tokens_per_second": tokens / med["ours"]["seconds"], "peak_memory_mb": med["ours"]["peak_mb"],
                           "estimate_mb": est, "baseline_tokens_per_second": tokens / med["baseline"]["seconds"],
                           "baseline_peak_memory_mb": med["baseline"]["peak_mb"], "seq_len": 2 * limit, "batch": batch,
                           "precision": precision, "layers": depth}
    if record and depth == QWEN25_3B["num_hidden_layers"]:
        # The doctor's time estimate uses these tokens/s for hardware=<record> model=qwen2.5-3b.
        path = Path(measured)
        table = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        table.update({f"{record}/qwen2.5-3b/{m}": v for m, v in results.items()})
        path.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"recorded in {path} for hardware={record}")


def sample_lengths(path: str, limit: int, n: int, seed: int, base: str = "models/base") -> list[tuple[int, int]]:
    """n (prompt, answer) token lengths drawn (seeded) from the records of `path` (data/split's format;
    `builtin`: 1000 pairs of the built-in corpus), measured with `base`'s tokenizer, each part scaled so
    that the longest fits `limit`."""
    import random

    from transformers import AutoTokenizer

    from medqa_scale.core.durable import read_jsonl
    from medqa_scale.train.trainer import encode_records

    tokenizer = AutoTokenizer.from_pretrained(base)
    if path == "builtin":
        from medqa_scale.builtin.corpus import generate_pairs
        from medqa_scale.model.chat_format import to_messages

        system = read_yaml("params.yaml")["preprocess"]["system_prompt"]
        records = [{"messages": to_messages(r["question"], r["answer"], system)} for r in generate_pairs(1000, seed=42)]
    else:
        records = read_jsonl(path)
    encoded = encode_records(tokenizer, records)
    pairs = [(sum(1 for x in labels if x == -100), sum(1 for x in labels if x != -100)) for labels in encoded["labels"]]
    top = (max(a for a, _ in pairs), max(b for _, b in pairs))
    drawn = random.Random(seed).choices(pairs, k=n)
    return [(max(1, round(a * limit / top[0])), max(1, round(b * limit / top[1]))) for a, b in drawn]


def config_vocab(weights: str) -> int:
    return json.loads((Path(weights) / "config.json").read_text(encoding="utf-8"))["vocab_size"]


def one_run_in_subprocess(setup, method, weights, precision, limit, batch, steps, lengths_from, base) -> dict:
    """One run in a fresh process: CPU memory is measured as the process's growth, which a previous
    run's freed but kept memory would distort."""
    import subprocess

    cmd = [sys.executable, __file__, "--arch", "qwen2.5-3b", "--one", f"{setup}:{method}:{weights}",
           "--seq-len", str(limit), "--batch", str(batch), "--steps", str(steps), "--precision", precision, "--base", base]
    if lengths_from:
        cmd += ["--lengths-from", lengths_from]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{setup} {method} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def one_run(setup: str, method: str, weights: str, precision: str, limit: int, batch: int, steps: int,
            lengths_from: str | None, base: str = "models/base") -> dict:
    """Train `steps` + 1 steps with (a) a plain Trainer or (b) ours; seconds of the timed steps, peak memory
    from the start of training, the eval loss on one held-out batch, the baseline's padding share."""
    import tempfile

    import torch
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerFast, Trainer, TrainerCallback

    from medqa_scale.core.params import method_args
    from medqa_scale.model.chat_format import IGNORE_INDEX
    from medqa_scale.model.device import PeakMemory
    from medqa_scale.model.loading import add_trainable_adapter, load_base_model
    from medqa_scale.train.trainer import RegularisedTrainer, data_collator, training_arguments

    p = read_yaml("params.yaml")
    pairs = sample_lengths(lengths_from or "data/split/train-1k.jsonl", limit, batch * (steps + 2), 0, base)
    g = torch.Generator().manual_seed(1)
    rows = []
    for a, b in pairs:
        ids = torch.randint(0, config_vocab(weights), (a + b,), generator=g).tolist()
        rows.append({"input_ids": ids, "attention_mask": [1] * (a + b), "labels": [IGNORE_INDEX] * a + ids[a:]})
    train, held_out = Dataset.from_list(rows[:batch * (steps + 1)]), Dataset.from_list(rows[batch * (steps + 1):])
    tokenizer = PreTrainedTokenizerFast.from_pretrained(base)  # only pads; its ids never reach the model
    tokenizer.pad_token_id = 0
    quantization = p["quantization"] if method == "qlora" else None
    model = load_base_model(Path(weights), quantization=quantization, precision=precision, trust_remote_code=False)
    for w in model.parameters():  # fault in the memory-mapped weights now, so that memory counts training only
        w.data.sum()
    fields = method_args(p["train"]["args"], p["train"]["method_args"][method])
    model = add_trainable_adapter(model, p["lora"], quantized=quantization is not None,
                                  gradient_checkpointing=bool(fields.get("activation_checkpointing")))
    fields.update(per_device_train_batch_size=batch, gradient_accumulation_steps=1, max_steps=steps + 1, num_train_epochs=1,
                  eval_strategy="no", save_strategy="no", load_best_model_at_end=False, logging_steps=10**6, disable_tqdm=True,
                  warmup_steps=0)
    padded = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    padding_free = setup == "ours" and p["train"]["padding_free"]
    if setup == "baseline":
        fields.pop("train_sampling_strategy", None)  # random order
    scratch = tempfile.TemporaryDirectory(prefix="bench-train.")  # the Trainer's output_dir, removed at exit
    args = training_arguments(fields, lr=p["train"]["lr"], seed=0, precision=precision, output_dir=Path(scratch.name),
                              padding_free=padding_free, num_processes=1)

    class Clock(TrainerCallback):
        start = None

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 1:  # the first step warms up kernels and allocators
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                Clock.start = time.perf_counter()

    if setup == "baseline":
        trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=padded, callbacks=[Clock()])
    else:
        trainer = RegularisedTrainer(model=model, args=args, train_dataset=train, callbacks=[Clock()],
                                     data_collator=data_collator(tokenizer, padding_free), kl_beta=p["train"]["kl_beta"])
    memory = PeakMemory().start()
    trainer.train()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - Clock.start
    peak = memory.stop()
    loss = Trainer(model=model, args=args, eval_dataset=held_out, data_collator=padded).evaluate()["eval_loss"]
    batches = [padded([train[i] for i in range(k, min(k + batch, len(train)))]) for k in range(0, len(train), batch)]
    padding = 1 - sum(int(b["attention_mask"].sum()) for b in batches) / sum(b["attention_mask"].numel() for b in batches)
    return {"seconds": seconds, "peak_mb": peak, "eval_loss": loss, "padding": padding}


if __name__ == "__main__":
    main()
