"""medqa_scale.serve.experiments: what the pipeline wrote, read from the workspace (and, in
tests/test_app.py, from experiments through DVC): the runs params name, which of them lack answers,
the results and figures present.

Run: python -m pytest tests/test_experiments.py -q
"""

from __future__ import annotations

import json

import pytest
from ruamel.yaml import YAML

from medqa_scale.core.cli import PipelineError
from medqa_scale.serve.experiments import WORKSPACE, Snapshot, experiments, load_view


def write_workspace(ws, runs_done=("base",)):
    p = {"methods": ["lora"], "split": {"scales": ["1k"]}, "train": {"seeds": [42]}}
    with open(ws / "params.yaml", "w", encoding="utf-8") as f:
        YAML(typ="safe", pure=True).dump(p, f)
    (ws / "data/split").mkdir(parents=True)
    (ws / "data/split/test.jsonl").write_text(json.dumps({"id": "q1", "question": "头痛？", "answer": "休息。"},
                                                         ensure_ascii=False) + "\n", encoding="utf-8")
    for folder in ("data/predictions", "data/scores"):
        (ws / folder).mkdir(parents=True)
    for run in runs_done:
        (ws / f"data/predictions/{run}.jsonl").write_text(json.dumps({"id": "q1", "prediction": "多休息。"}) + "\n")
        (ws / f"data/scores/{run}.jsonl").write_text(json.dumps({"id": "q1", "rouge-l": 50.0, "bleu": 10.0,
                                                                "char-bleu-4": 5.0, "bleu_stats": [1, 1, 0, 0, 0, 0, 0, 0, 2, 2]}) + "\n")
    (ws / "plots").mkdir()
    (ws / "plots/loss_curves.png").write_bytes(b"\x89PNG")


def test_the_workspace_view_lists_the_runs_params_name_and_what_each_still_needs(tmp_path, monkeypatch):
    write_workspace(tmp_path)
    monkeypatch.chdir(tmp_path)
    view = load_view(Snapshot(None))
    assert view.runs == ["base", "base-4bit", "lora-1k-42"]
    assert view.questions == {"q1": "头痛？"} and view.references == {"q1": "休息。"}
    assert view.missing == ["`base-4bit`: no answers yet; run `dvc repro evaluate`",
                            "`lora-1k-42`: no answers yet; run `dvc repro evaluate`"]
    assert set(view.answers["run"]) == {"base"}
    assert view.figures == {"loss_curves.png": b"\x89PNG"} and view.results is None and view.report is None


def test_a_snapshot_reads_none_for_what_it_lacks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Snapshot(None).read_bytes("plots/report.md") is None and Snapshot(None).jsonl("nothing.jsonl") is None
    with pytest.raises(PipelineError, match="params.yaml not found"):
        load_view(Snapshot(None))


def test_outside_a_git_repository_only_the_workspace_is_listed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert experiments() == {WORKSPACE: None}
