"""Stage data_card: how long the cleaned questions and answers are, per source.

Run:    dvc repro data_card         (or: python -m stages.data_card)
Reads:  data/processed/qa.jsonl
Writes: plots/data_card.png (length histograms in characters and tokens, per source; `dvc plots show`)
        metrics/data_card.json (per source: records, median and 95th percentile of each length)
"""

from __future__ import annotations

import logging
from pathlib import Path

from medqa_scale.core.cli import run
from medqa_scale.data.datacard import length_table, plot_data_card, summary
from medqa_scale.core.durable import read_jsonl, remove_stale, write_json

log = logging.getLogger(__name__)

IN = Path("data/processed/qa.jsonl")
FIGURE, REPORT = Path("plots/data_card.png"), Path("metrics/data_card.json")


def main() -> None:
    remove_stale(FIGURE, REPORT)
    table = length_table(read_jsonl(IN))
    plot_data_card(table, FIGURE)
    write_json(REPORT, summary(table))
    log.info("data card of %d records from %d source(s) in %s", len(table), table.source.nunique(), FIGURE)


if __name__ == "__main__":
    run(main)
