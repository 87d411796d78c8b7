"""Stage download_benchmarks: gather the multiple-choice sets every run is scored on.

Run:    dvc repro download_benchmarks     (or: python -m stages.download_benchmarks)
Reads:  params seed, benchmarks (each: role and one source: builtin, path, url, hf or modelscope);
        data/external/ (path sets live there)
Writes: data/benchmarks/<name>.jsonl, one {"id", "set", "role", "origin", "question", "options",
        "answer" (letters, or null when the set gives none), "explanation", "subject" (where the
        set has them)} per readable item
        data/benchmarks/report.json, every item left out, per set: file, line or row, reason, excerpt
        metrics/download_benchmarks.json (per set: role, provenance, files, items, labelled,
        unlabelled, multiple-answer, counts left out by reason)

Sets are read by content, whatever their layout (medqa_scale/data/choices.py). A set with no
labelled item stops the stage with a message naming it: there would be nothing to score.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import ExitStack
from pathlib import Path

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.core.durable import atomic_path, remove_stale, write_json, write_jsonl
from medqa_scale.core.params import load_params
from medqa_scale.data.choices import read_benchmark

log = logging.getLogger(__name__)

OUT, SUMMARY = Path("data/benchmarks"), Path("metrics/download_benchmarks.json")


def main() -> None:
    remove_stale(OUT, SUMMARY)
    p = load_params()
    if not p["benchmarks"]:
        log.info("params benchmarks is empty: no set to score")
    reads = []
    for spec in p["benchmarks"]:
        with tempfile.TemporaryDirectory(prefix="download_benchmarks.") as scratch:
            read = read_benchmark(spec, Path(scratch), p["seed"])
        labelled = read.summary()["labelled"]
        if not labelled:
            raise PipelineError(f"benchmark {read.name!r} has no labelled item ({len(read.items)} read, "
                                f"{len(read.problems)} left out; first: {read.problems[:1]}): its test files give no "
                                "answers; point it at the dev or validation files, which do")
        reads.append((spec["role"], read))
    with ExitStack() as stack:
        out = stack.enter_context(atomic_path(OUT, directory=True))
        for role, read in reads:
            write_jsonl(out / f"{read.name}.jsonl", [{"set": read.name, "role": role, **item} for item in read.items])
        write_json(out / "report.json", {read.name: read.problems for _, read in reads})
    write_json(SUMMARY, {"sets": {read.name: {"role": role, **read.summary()} for role, read in reads}})
    for role, read in reads:
        s = read.summary()
        log.info("%s (%s): %d items, %d unlabelled, %d with several answers, %d left out (see %s)", read.name, role,
                 s["items"], s["unlabelled"], s["multiple_answer"], s["skipped_total"], OUT / "report.json")


if __name__ == "__main__":
    run(main)
