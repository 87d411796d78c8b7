"""Stage judge: an LLM judge's pairwise verdicts on the test answers, as medical-LLM papers report
them (win, tie, loss), when params judge.enabled is true; otherwise it asks nothing.

Run:    dvc repro judge        (or: python -m stages.judge), with the judge's endpoint up, e.g.
        python -m llama_cpp.server --model judge.gguf --port 8000, or vLLM, SGLang, Ollama, an API
Reads:  data/predictions/<run>.jsonl of the references and of each run params methods x split.scales x
        train.seeds name; params judge.{enabled, model, temperature, seed, max_tokens, rubric}, methods,
        split.scales, train.seeds, seed, evaluate.bootstrap; and, undeclared because they say where
        the judge runs and not what it is asked, judge.{base_url, api_key_env, max_concurrent,
        max_requests, timeout_s}; the API key from the environment variable judge.api_key_env names
Writes: data/judge/judgments.jsonl, one line per judged run pair and test question: {"comparison",
        "run", "against", "id", "group", "run_first" and "run_second" (the verdict, "A", "B", "tie" or
        null when unparseable, and its reason, with the run's answer shown first and second),
        "outcome" (win, tie, loss, unparseable), "consistent", "identical" (two equal answers: a tie,
        not asked)}; empty when the judge is off
        data/judge_cache.jsonl (kept between runs, DVC `persist`): every ordered judgment asked so
        far, keyed by the judge's model and settings, the rubric's hash, the question and both
        answers, so that a rerun asks only what it has not been told; written even when the stage fails
        metrics/judge.json: requests, retries, tokens, time (wall, and summed over requests), ordered
        judgments needed, asked and taken from the cache, pairs of identical answers, the judge's
        consistency, and per comparison the win, tie and loss rates and the win rate (ties half) with
        bootstrap intervals over question groups and seeds and the unadjusted paired p-value (Holm's
        correction is the summary's, over all its comparisons)

Judged: each setup against its reference (LoRA: base; QLoRA: base-4bit) and against the next
smaller scale of its method, seed against seed; each pair in both orders (a verdict counts only
when they agree). The test questions and answers are sent to judge.base_url.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from tqdm.auto import tqdm

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.core.durable import read_jsonl, remove_stale, write_json, write_jsonl
from medqa_scale.core.params import load_params
from medqa_scale.evaluate.comparison import check_same_questions
from medqa_scale.evaluate.judge import Judge, judge_pairs, redacted, rubric_hash, system_prompt
from medqa_scale.evaluate.metrics import bootstrap_counts
from medqa_scale.evaluate.win_rates import judge_comparisons, judged_comparisons, row, seed_run, summary

log = logging.getLogger(__name__)

PREDICTIONS = Path("data/predictions")
JUDGMENTS, CACHE, METRICS = Path("data/judge/judgments.jsonl"), Path("data/judge_cache.jsonl"), Path("metrics/judge.json")


def main() -> None:
    remove_stale(JUDGMENTS, METRICS, CACHE)
    p = load_params()
    j = p["judge"]
    if not j["enabled"]:
        write_jsonl(JUDGMENTS, [])
        write_json(METRICS, {"enabled": False})
        if not CACHE.exists():
            write_jsonl(CACHE, [])
        log.info("judge.enabled is false: nothing asked")
        return
    seeds, b = p["train"]["seeds"], p["evaluate"]["bootstrap"]
    comparisons = judged_comparisons(p["methods"], [str(s) for s in p["split"]["scales"]])
    answers = read_answers(sorted({seed_run(s, seed) for pair in comparisons for s in pair for seed in seeds}))
    judge = Judge(j["base_url"], j["model"], api_key=api_key(j["api_key_env"]), temperature=j["temperature"], seed=j["seed"],
                  max_tokens=j["max_tokens"], max_concurrent=j["max_concurrent"], budget=j["max_requests"],
                  timeout_s=j["timeout_s"])
    pairs = [(f"{a} vs {c}", seed_run(a, seed), seed_run(c, seed), i) for a, c in comparisons for seed in seeds
             for i in range(len(answers[seed_run(a, seed)]))]
    log.info("judging %d answer pairs in both orders with %s at %s (test questions and answers are sent there)",
             len(pairs), j["model"], redacted(j["base_url"]))
    start = time.perf_counter()
    results = ask(judge, j["rubric"], [(answers[r][i], answers[o][i]) for _, r, o, i in pairs])
    wall = time.perf_counter() - start
    lines = [{"comparison": name, "run": r, "against": o, "id": answers[r][i]["id"], "group": answers[r][i]["group"], **res}
             for (name, r, o, i), res in zip(pairs, results)]
    write_jsonl(JUDGMENTS, lines)
    groups = [a["group"] for a in next(iter(answers.values()))]
    judgments = judge_comparisons(lines, comparisons, seeds, bootstrap_counts(groups, b["resamples"], p["seed"]), p["seed"])
    rates = {f"{a} vs {c}": row(v, b["confidence"]) for (a, c), v in judgments.items()}
    identity = {k: j[k] for k in ("model", "temperature", "seed", "max_tokens")}
    write_json(METRICS, {"enabled": True, "judge": {**identity, "rubric_sha256": rubric_hash(system_prompt(j["rubric"]))},
                         "usage": {**judge.usage.as_dict(), "wall_seconds": round(wall, 3)},
                         "identical_answers": sum(r["identical"] for r in results), **summary(list(rates.values())),
                         "confidence": b["confidence"], "comparisons": rates})
    u = judge.usage
    log.info("judge: %d requests (%d retries, %d unparseable replies), %d prompt and %d completion tokens in %.0f s; "
             "%d of %d distinct ordered judgments from the cache", u.requests, u.retries, u.unparseable, u.prompt_tokens,
             u.completion_tokens, wall, u.needed - u.asked, u.needed)


def ask(judge: Judge, rubric: str, pairs: list[tuple[dict, dict]]) -> list[dict]:
    """judge_pairs over (run's answer, other's answer) records, with the cache read before and
    written after, also when asking fails part way (what the endpoint answered is kept)."""
    cache = read_cache(CACHE)
    try:
        with tqdm(desc="judge requests", unit="judgment") as bar:
            results = judge_pairs(judge, rubric, [{"question": a["question"], "run": a["prediction"], "other": o["prediction"]}
                                                  for a, o in pairs], cache, bar)
    finally:
        write_jsonl(CACHE, [{"key": k, **v} for k, v in sorted(cache.items())])
    return results


def read_answers(runs: list[str]) -> dict[str, list[dict]]:
    """Each run's answers, all to the same test questions in the same order."""
    missing = [r for r in runs if not (PREDICTIONS / f"{r}.jsonl").exists()]
    if missing:
        raise PipelineError(f"{PREDICTIONS}/{missing[0]}.jsonl not found ({len(missing)} runs unanswered): run `dvc repro`")
    answers = {r: read_jsonl(PREDICTIONS / f"{r}.jsonl") for r in runs}
    try:
        check_same_questions(answers)
    except ValueError as e:
        raise PipelineError(f"{PREDICTIONS}: {e}") from None
    return answers


def api_key(variable: str | None) -> str | None:
    """The key from the environment variable params name; never from params, never logged."""
    if variable is None:
        return None
    key = os.environ.get(variable)
    if not key:
        raise PipelineError(f"judge.api_key_env names {variable}, which is not set: export {variable}=<your key> (the key "
                            "itself never goes into params), or set judge.api_key_env: null for a server without one")
    return key


def read_cache(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    try:
        return {line["key"]: {"verdict": line["verdict"], "reason": line["reason"]} for line in read_jsonl(path)}
    except (ValueError, KeyError, TypeError) as e:
        raise PipelineError(f"{path} is not the judge's cache ({e}); delete it to ask every judgment again") from None


if __name__ == "__main__":
    run(main)
