"""Stage download_data: gather the raw question-answer records of every data source.

Run:    dvc repro download_data     (or: python -m stages.download_data)
Reads:  params seed, data (sources, max_bad_fraction); data/external/ (path sources live there)
Writes: data/raw/qa.jsonl, one {"id", "source", "origin", "question", "answer", "history"} per line
        data/raw/report.json, every item left out: source, file, line or row, reason, excerpt
        metrics/download_data.json (per source: provenance, files, records, counts left out by reason)

Each source in data.sources is one of builtin, path, url, hf or modelscope (docs/data.md);
its files are read whatever their container, encoding and record shape
(medqa_scale/data/formats.py). A source that yields nothing, or whose share of unreadable items passes
data.max_bad_fraction, stops the stage with a message naming it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from medqa_scale.core.cli import PipelineError, run
from medqa_scale.core.durable import remove_stale, write_json, write_jsonl
from medqa_scale.core.params import load_params
from medqa_scale.data.sources import apply_shares, read_source, unknown_shape_hint

log = logging.getLogger(__name__)

OUT, REPORT, SUMMARY = Path("data/raw/qa.jsonl"), Path("data/raw/report.json"), Path("metrics/download_data.json")


def main() -> None:
    remove_stale(OUT, REPORT, SUMMARY)
    p = load_params()
    reads = []
    for source in p["data"]["sources"]:
        with tempfile.TemporaryDirectory(prefix="download_data.") as scratch:
            reads.append(read_source(source, Path(scratch), p["seed"]))
    check(reads, p["data"]["max_bad_fraction"])
    mixed_out = apply_shares(reads, [source.get("share") for source in p["data"]["sources"]], p["seed"])
    write_jsonl(OUT, [r for read in reads for r in read.records])
    write_json(REPORT, {read.name: read.problems for read in reads})
    write_json(SUMMARY, {"sources": {read.name: read.summary() for read in reads},
                         "records": sum(len(read.records) for read in reads),
                         "skipped_total": sum(len(read.problems) for read in reads),
                         "left_out_by_share": mixed_out})
    for read in reads:
        log.info("%s: %d records, %d left out (see %s)", read.name, len(read.records), len(read.problems), REPORT)


def check(reads, max_bad_fraction: float) -> None:
    for read in reads:
        if not read.records:
            raise PipelineError(f"data source {read.name!r} gave no usable records ({len(read.problems)} left out; "
                                f"first: {read.problems[:1]}); check its files and its fields mapping"
                                f"{unknown_shape_hint(read.problems)}")
        if read.bad_fraction > max_bad_fraction:
            raise PipelineError(f"data source {read.name!r}: {len(read.problems)} of {read.items} items "
                                f"({read.bad_fraction:.1%}) could not be read, more than data.max_bad_fraction "
                                f"({max_bad_fraction:.0%}); first: {read.problems[:3]}. Fix the file, map its keys "
                                "with `fields`, or raise the threshold")


if __name__ == "__main__":
    run(main)
