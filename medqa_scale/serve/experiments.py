"""What the pipeline wrote, in the workspace or in any commit or experiment DVC knows: the runs'
answers and scores, the results, the report, the figures and the data card, read through DVC's
file system so that DVC-tracked outputs come from its cache. The web page shows these.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd
from ruamel.yaml import YAML

from medqa_scale.core.cli import PipelineError
from medqa_scale.core.params import runs_of
from medqa_scale.serve.browse import answers_table, judgments_by_answer

log = logging.getLogger(__name__)

WORKSPACE = "workspace"
FIGURES = {"data_scale_comparison.png": "ROUGE-L and BLEU (and the judge's win rate) against training samples",
           "method_comparison.png": "LoRA against QLoRA", "loss_curves.png": "Loss curves"}


class Snapshot:
    """Files of the workspace (rev None) or of one commit or experiment (through DVC, so that
    DVC-tracked outputs come from the cache)."""

    def __init__(self, rev: str | None):
        self.rev = rev
        self._fs = None
        if rev is not None:
            from dvc.api import DVCFileSystem

            self._fs = DVCFileSystem(".", rev=rev)

    def read_bytes(self, path: str) -> bytes | None:
        """The file's bytes, or None when this snapshot lacks it."""
        try:
            return Path(path).read_bytes() if self._fs is None else self._fs.read_bytes(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def jsonl(self, path: str) -> list[dict] | None:
        data = self.read_bytes(path)
        return None if data is None else [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


@dataclass
class View:
    """One snapshot's test set and results, as the page shows them."""

    runs: list[str]
    questions: dict[str, str]  # id -> question, in test order
    references: dict[str, str]
    answers: pd.DataFrame  # browse.answers_table
    missing: list[str]  # notes for runs without answers
    results: pd.DataFrame | None
    report: str | None
    figures: dict[str, bytes]
    data_card: tuple[bytes | None, dict | None]
    judgments: dict[tuple[str, str], list[dict]]  # browse.judgments_by_answer; empty without the judge


def load_view(snapshot: Snapshot) -> View:
    params_text = snapshot.read_bytes("params.yaml")
    if params_text is None:
        raise PipelineError("params.yaml not found: run from the repository root")
    params = YAML(typ="safe", pure=True).load(params_text.decode("utf-8"))  # as params.read_yaml reads it
    runs = runs_of(params["methods"], params["split"]["scales"], params["train"]["seeds"])
    test = snapshot.jsonl("data/split/test.jsonl") or []
    predictions = {r: snapshot.jsonl(f"data/predictions/{r}.jsonl") for r in runs}
    scores = {r: snapshot.jsonl(f"data/scores/{r}.jsonl") for r in runs}
    missing = [f"`{r}`: no answers yet; run `dvc repro evaluate`" for r in runs if predictions[r] is None or scores[r] is None]
    results = snapshot.read_bytes("plots/results_summary.csv")
    card = snapshot.read_bytes("metrics/data_card.json")
    report = snapshot.read_bytes("plots/report.md")
    return View(runs=runs, questions={r["id"]: r["question"] for r in test},
                references={r["id"]: r["answer"] for r in test}, answers=answers_table(predictions, scores),
                missing=missing, results=None if results is None else pd.read_csv(io.BytesIO(results)),
                report=None if report is None else report.decode("utf-8"),
                figures={name: data for name in FIGURES if (data := snapshot.read_bytes(f"plots/{name}")) is not None},
                data_card=(snapshot.read_bytes("plots/data_card.png"), None if card is None else json.loads(card)),
                judgments=judgments_by_answer(snapshot.jsonl("data/judge/judgments.jsonl")))


def experiments() -> dict[str, str | None]:
    """Label -> rev of the workspace, HEAD and HEAD's experiments (`dvc exp show`); the
    workspace alone when DVC cannot list them (not a Git repository, say)."""
    found = {WORKSPACE: None}
    proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        log.warning("`dvc exp show` failed, so only the workspace can be browsed: %s", proc.stderr.strip()[-300:])
        return found
    for baseline in json.loads(proc.stdout):
        if baseline["rev"] != WORKSPACE:
            found[f"{baseline.get('name') or baseline['rev'][:7]} (commit)"] = baseline["rev"]
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                found[f"{rev.get('name') or exp.get('name') or rev['rev'][:7]} (experiment)"] = rev["rev"]
    return found


@lru_cache(maxsize=16)
def snapshot(rev: str | None) -> Snapshot:
    return Snapshot(rev)
