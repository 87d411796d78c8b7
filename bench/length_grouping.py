"""Benchmark: why length-grouped batches cost eval loss, and which batching keeps the loss.

Run:    python bench/length_grouping.py [--scale 1k] [--seeds 42 43] [--micro-batch 4 --accumulation 4]
Needs:  `dvc repro split` (the built-in model and a train subset).

Trains the train stage's setup (params.yaml: RegularisedTrainer, train.args, train.method_args.lora)
on the same samples with each TrainingArguments.train_sampling_strategy:
  random            every batch a random draw (the default)
  group_by_length   transformers' LengthGroupedSampler: random megabatches of up to 50 optimizer
                    steps, each sorted longest first, so every stretch of steps runs from the
                    longest samples to the shortest, and every epoch ends on short ones
  batch_rebalance   transformers' BatchRebalanceSampler: each optimizer step a random draw of the
                    effective batch, split into micro-batches of similar length
and, as a diagnostic, group_by_length with its optimizer-step groups in random order (same batches,
no long-to-short sweep). It prints, per strategy, the eval loss on data/split/dev.jsonl for each
seed and their mean, the padding share of the micro-batches, and real tokens/s (median over seeds).
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medqa_scale.core.params import read_yaml  # noqa: E402

STRATEGIES = ("random", "group_by_length", "group_by_length, steps shuffled", "batch_rebalance")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="1k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43])
    parser.add_argument("--micro-batch", type=int, default=4, help="per_device_train_batch_size (the study's LoRA: 4)")
    parser.add_argument("--accumulation", type=int, default=4, help="gradient_accumulation_steps (the study's LoRA: 4); "
                        "batch_rebalance splits each step into this many micro-batches, so with 1 it is random order")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from transformers import AutoTokenizer

    from medqa_scale.core.durable import read_jsonl
    from medqa_scale.train.trainer import encode_records
    from train_throughput import train_once

    p = read_yaml("params.yaml")
    tokenizer = AutoTokenizer.from_pretrained("models/base")
    train = encode_records(tokenizer, read_jsonl(f"data/split/train-{args.scale}.jsonl"))
    dev = encode_records(tokenizer, read_jsonl("data/split/dev.jsonl"))
    real = sum(len(ids) for ids in train["input_ids"])
    print(f"{len(train)} samples, {real} real tokens, {p['train']['args']['num_train_epochs']} epochs, micro-batches of "
          f"{args.micro_batch} x {args.accumulation} per step, seeds {args.seeds}; eval loss on {len(dev)} dev samples")
    for strategy in STRATEGIES:
        losses, speeds, padding = [], [], []
        for seed in args.seeds:
            q = copy.deepcopy(p)
            q["seed"] = seed
            q["train"]["args"]["train_sampling_strategy"] = strategy.split(",")[0]
            q["train"]["method_args"]["lora"] = {"per_device_train_batch_size": args.micro_batch,
                                                 "gradient_accumulation_steps": args.accumulation}
            trainer_class = steps_shuffled() if "shuffled" in strategy else recording()
            seconds, loss = train_once("ours", q, tokenizer, train, dev, trainer_class=trainer_class)
            losses.append(loss)
            speeds.append(real * q["train"]["args"]["num_train_epochs"] / seconds)
            padding.append(trainer_class.padding_share())
        print(f"  {strategy:32s} eval loss {' '.join(f'{x:.4f}' for x in losses)}  mean {statistics.mean(losses):.4f}  "
              f"padding {statistics.mean(padding):5.1%}  {statistics.median(speeds):7.0f} real tokens/s")


def recording():
    """RegularisedTrainer that counts padding in the micro-batches it trains on."""
    from medqa_scale.train.trainer import RegularisedTrainer

    class Recording(RegularisedTrainer):
        seen = {"real": 0, "total": 0}

        def training_step(self, model, inputs, *args, **kwargs):
            mask = inputs.get("attention_mask")
            if mask is not None:
                Recording.seen["real"] += int(mask.sum())
                Recording.seen["total"] += mask.numel()
            return super().training_step(model, inputs, *args, **kwargs)

        @classmethod
        def padding_share(cls) -> float:
            return 1 - cls.seen["real"] / max(cls.seen["total"], 1)

    Recording.seen = {"real": 0, "total": 0}
    return Recording


def steps_shuffled():
    """The diagnostic: LengthGroupedSampler's groups of one optimizer step each, in random order."""
    import torch

    base = recording()

    class Shuffled(base):
        def _get_train_sampler(self, train_dataset=None):
            grouped = list(super()._get_train_sampler(train_dataset))
            unit = self.args.train_batch_size * self.args.gradient_accumulation_steps  # the sampler's group size
            steps = [grouped[i:i + unit] for i in range(0, len(grouped), unit)]
            order = torch.randperm(len(steps), generator=torch.Generator().manual_seed(self.args.seed)).tolist()
            return [i for k in order for i in steps[k]]

    return Shuffled


if __name__ == "__main__":
    main()
