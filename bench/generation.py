"""Benchmark: batched greedy generation against one question at a time, and a merged LoRA adapter
against the unmerged one and against the base model.

Run:    python bench/generation.py [--prompts 100] [--batch 50] [--repeats 3] [--run lora-5k-42]
Needs:  `dvc repro train` (models/base, data/split/test.jsonl, the run's adapter).

Part 1, batching: the base model answers the first --prompts test questions (a) one at a time
(batch 1) and (b) as the generate stage does, longest first in batches of --batch with left
padding. Timed answers are forced to max_new_tokens (min_new_tokens), as in part 2, so that the
ratio measures batching, not how long the model likes to answer (a batch waits for its longest
answer; one question at a time does not). It prints the median samples/s of each over --repeats
runs, their ratio (goal: at least 10), and whether every answer is identical between the two batch
sizes, both as the generate stage answers (stopping as usual) and forced to full length (they must
be: batching may not change a greedy answer).

Part 2, merging: the same questions, batched, answered by the base model, the run's LoRA adapter
unmerged (PEFT's forward pass adds B·A·x to every targeted layer) and the adapter merged into the
base weights, as the generate stage evaluates LoRA runs. Timed answers are forced to
max_new_tokens (min_new_tokens), so that all three generate the same number of tokens and
samples/s compares the cost of a token, not how long each model likes to answer. It prints
samples/s of each, merged against base (goal: within 15%, a ratio of at least 0.85), merged
against unmerged, and whether the merged answers (greedy, stopping as usual) equal the unmerged ones. Runs are interleaved so that drift in the machine's
speed hits all alike. On a GPU the same script measures the GPU (precision from params.yaml).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medqa_scale.core.params import read_yaml  # noqa: E402

BASE = Path("models/base")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--run", default=None, help="a LoRA run (default: the largest lora scale, first seed)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch
    from transformers import AutoTokenizer

    from medqa_scale.model.device import resolve_precision
    from medqa_scale.core.durable import read_jsonl
    from medqa_scale.model.loading import load_run_model

    torch.manual_seed(0)
    p = read_yaml("params.yaml")
    precision = resolve_precision(p["precision"])
    run = args.run or f"lora-{p['split']['scales'][-1]}-{p['train']['seeds'][0]}"
    tokenizer = AutoTokenizer.from_pretrained(BASE, padding_side="left")
    chats = [r["messages"] for r in read_jsonl("data/split/test.jsonl")[: args.prompts]]
    e = p["evaluate"]
    load = lambda adapter, merge: load_run_model(BASE, adapter, None, precision=precision,  # noqa: E731
                                                 trust_remote_code=p["model"]["trust_remote_code"], merge=merge)
    models = {"base": load(None, False), "unmerged": load(Path("models/adapters") / run, False),
              "merged": load(Path("models/adapters") / run, True)}
    print(f"{len(chats)} test questions, max_new_tokens {e['max_new_tokens']}, {precision} on "
          f"{'GPU ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}, {args.repeats} runs each (median)")

    # Part 1: batch 1 against --batch on the base model, every answer max_new_tokens long.
    fixed = {**e, "generation": {**e["generation"], "min_new_tokens": e["max_new_tokens"]}}
    sizes = (("sequential", 1), ("batched", args.batch))
    natural = {name: answer(models["base"], tokenizer, chats, batch, e)[0] for name, batch in sizes}
    timed = {"sequential": [], "batched": []}
    forced = {}
    for _ in range(args.repeats):
        for name, batch in sizes:
            forced[name], seconds = answer(models["base"], tokenizer, chats, batch, fixed)
            timed[name].append(seconds)
    speed = {name: len(chats) / statistics.median(s) for name, s in timed.items()}
    print(f"  batch 1                {speed['sequential']:8.1f} samples/s ({e['max_new_tokens']} tokens each)")
    print(f"  batch {args.batch:<3d}              {speed['batched']:8.1f} samples/s ({e['max_new_tokens']} tokens each)")
    print(f"ratio batched/sequential: {speed['batched'] / speed['sequential']:.1f} (goal >= 10); identical answers: "
          f"{same(natural, 'sequential', 'batched')} as generated, {same(forced, 'sequential', 'batched')} at full length")

    # Part 2: the base model, the unmerged adapter and the merged one, batched.
    answers = {}
    for name in ("merged", "unmerged"):
        answers[name], _ = answer(models[name], tokenizer, chats, args.batch, e)
    timed = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            timed[name].append(answer(model, tokenizer, chats, args.batch, fixed)[1])
    speed = {name: len(chats) / statistics.median(s) for name, s in timed.items()}
    for name in models:
        print(f"  {name + (' ' + run if name != 'base' else ''):22s} {speed[name]:8.1f} samples/s "
              f"({e['max_new_tokens']} tokens each)")
    print(f"ratio merged/base: {speed['merged'] / speed['base']:.2f} (goal >= 0.85); merged/unmerged: "
          f"{speed['merged'] / speed['unmerged']:.2f}; merged answers equal unmerged: {same(answers, 'merged', 'unmerged')}")


def same(answers: dict, a: str, b: str) -> str:
    """'True (n/n)' when the two lists of answers are identical, else 'False (k/n)'."""
    equal = sum(x == y for x, y in zip(answers[a], answers[b]))
    return f"{answers[a] == answers[b]} ({equal}/{len(answers[a])})"


def answer(model, tokenizer, chats, batch: int, e: dict) -> tuple[list[str], float]:
    from medqa_scale.evaluate.generation import generate_answers, generation_config

    start = time.perf_counter()
    answers, _ = generate_answers(model, tokenizer, chats, batch, generation_config(tokenizer, e["generation"], e["max_new_tokens"]))
    return answers, time.perf_counter() - start


if __name__ == "__main__":
    main()
