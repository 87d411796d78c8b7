"""Stage benchmark: every run's accuracy on the multiple-choice sets (domain knowledge and retention),
by log-likelihood, with no generation.

Run:    dvc repro benchmark      (or: python -m stages.benchmark; python -m stages.benchmark lora-2k-42 base
                                  scores only the runs named, beside the others' files)
Reads:  models/base, models/adapters/<run>, data/benchmarks/<set>.jsonl (download_benchmarks),
        data/params/quantization-<method>.json; params seed, precision, device (undeclared: where, not
        what), methods, split.scales, train.seeds, model.trust_remote_code, model.chat_template_kwargs,
        preprocess.system_prompt, benchmarks (which sets, their roles), benchmark (scoring, k_shot,
        shot_files, multiple_answer, batch_size), evaluate.bootstrap
Writes: data/benchmark/<run>.jsonl, one {"set", "id", "answer", "chosen", "correct", "scores" (each
        candidate's summed log-likelihood)} per scored item
        metrics/benchmark/<run>.json: per set its role, accuracy (x100), n, its bootstrap interval
        (items resampled evaluate.bootstrap.resamples times, seeded by seed) and the items set aside
        by reason (unlabelled, multiple_answer, shots)

A QLoRA run and base-4bit are scored on the 4-bit base, as they answer; the others on the
full-precision base. The prompt is the run's chat template with the study's system prompt
(medqa_scale/evaluate/exam_scoring.py). Its own stage: editing the generation or ROUGE code does not
rerun it, and editing its scorer reruns no training. One process scores every run, as evaluate
does: a process per run would spend more time starting than scoring.
"""

from __future__ import annotations

import fnmatch
import logging
import random
import sys
from contextlib import ExitStack
from pathlib import Path

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.core.durable import atomic_path, read_json, read_jsonl, remove_stale, write_json, write_jsonl
from medqa_scale.core.params import REFERENCE_RUNS, load_params, run_method, runs_of, source_name
from medqa_scale.evaluate.exam_scoring import accuracy_summary, score_items
from medqa_scale.model.device import keep_bitsandbytes_out, needs_bitsandbytes, pin_device, resolve_precision
from medqa_scale.model.loading import load_run_model

log = logging.getLogger(__name__)

BASE, SETS = Path("models/base"), Path("data/benchmarks")
OUTPUTS = (Path("data/benchmark"), Path("metrics/benchmark"))


def main() -> None:
    p = load_params()
    named = sys.argv[1:]
    runs = named or runs_of(p["methods"], p["split"]["scales"], p["train"]["seeds"])
    if not any(needs_bitsandbytes(run_method(r)) for r in runs):  # before peft and transformers are imported
        keep_bitsandbytes_out()
    for name in runs:
        if name not in REFERENCE_RUNS and not (Path("models/adapters") / name / "adapter_config.json").exists():
            raise PipelineError(f"models/adapters/{name} holds no adapter: train it first with `dvc repro train@{name}`")
    b = p["benchmark"]
    sets = {}
    for spec in p["benchmarks"]:
        name = source_name(spec)
        path = SETS / f"{name}.jsonl"
        if not path.exists():
            raise PipelineError(f"{path} not found: gather the sets first with `dvc repro download_benchmarks`")
        sets[name] = prepare(read_jsonl(path), b, p["seed"])
    remove_stale(*OUTPUTS)
    pin_device(p["device"])
    from transformers import AutoTokenizer, set_seed

    set_seed(p["seed"])
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    with ExitStack() as stack:
        if named:  # a quick look at some runs: their files only, beside the others'
            folders = list(OUTPUTS)
        else:
            folders = [stack.enter_context(atomic_path(folder, directory=True)) for folder in OUTPUTS]
        for name in runs:
            score_run(name, sets, tokenizer, p, folders)
    log.info("scored %d runs on %d sets", len(runs), len(sets))


def prepare(items: list[dict], b: dict, seed: int) -> dict:
    """A set's shots (k of its dev files' items, drawn from seed), the items it scores, and those set
    aside by reason; with k_shot 0 the dev files are scored like the rest."""
    dev = [i for i in items if fnmatch.fnmatch(i["origin"]["file"], b["shot_files"])] if b["k_shot"] else []
    pool = [i for i in dev if i["answer"] and len(i["answer"]) == 1]  # a shot shows one answer
    if len(pool) < b["k_shot"]:
        raise PipelineError(f"benchmark {items[0]['set']!r}: benchmark.k_shot is {b['k_shot']} but its files matching "
                            f"benchmark.shot_files ({b['shot_files']!r}) hold {len(dev)} items; lower k_shot or add dev files")
    shots = random.Random(seed).sample(pool, b["k_shot"]) if b["k_shot"] else []
    aside = {"shots": len(dev), "unlabelled": 0, "multiple_answer": 0}
    dev_ids = {i["id"] for i in dev}
    scored = []
    for item in items:
        if item["id"] in dev_ids:
            continue
        if item["answer"] is None:
            aside["unlabelled"] += 1
        elif len(item["answer"]) > 1 and b["multiple_answer"] == "skip":
            aside["multiple_answer"] += 1
        else:
            scored.append(item)
    return {"role": items[0]["role"] if items else None, "shots": shots, "items": scored, "set_aside": aside}


def score_run(name: str, sets: dict[str, dict], tokenizer, p: dict, folders: list[Path]) -> None:
    method = run_method(name)
    quantization = read_json(Path("data/params") / f"quantization-{method}.json") if method else None
    adapter = None if name in REFERENCE_RUNS else Path("models/adapters") / name
    model = load_run_model(BASE, adapter, quantization, precision=resolve_precision(p["precision"]),
                           trust_remote_code=p["model"]["trust_remote_code"], merge=True)
    b, boot = p["benchmark"], p["evaluate"]["bootstrap"]
    rows, summary = [], {}
    for set_name, s in sets.items():
        results = score_items(model, tokenizer, s["items"], scoring=b["scoring"], system_prompt=p["preprocess"]["system_prompt"],
                              shots=s["shots"], batch_size=b["batch_size"], template_kwargs=p["model"]["chat_template_kwargs"])
        rows += [{"set": set_name, **r} for r in results]
        summary[set_name] = {"role": s["role"], **accuracy_summary([r["correct"] for r in results], boot["resamples"], p["seed"],
                                                                    boot["confidence"]), "set_aside": s["set_aside"]}
        log.info("%s: %s (%s) accuracy %.1f [%.1f, %.1f] over %d items", name, set_name, s["role"], summary[set_name]["accuracy"],
                 *summary[set_name]["interval"]["accuracy"].values(), len(results))
    write_jsonl(folders[0] / f"{name}.jsonl", rows)
    write_json(folders[1] / f"{name}.json", {"scoring": b["scoring"], "k_shot": b["k_shot"], "sets": summary})


if __name__ == "__main__":
    run(main)
