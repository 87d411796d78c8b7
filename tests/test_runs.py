"""medqa_scale.serve.runs: a run's adapter and its base's quantization, each checked with a message
naming the stage that makes it; prompts over the trained length refused.

Run: python -m pytest tests/test_runs.py -q
"""

from __future__ import annotations

import json

import pytest

from medqa_scale.core.cli import PipelineError
from medqa_scale.serve.runs import check_lengths, run_inputs


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    (tmp_path / "models/base").mkdir(parents=True)
    (tmp_path / "models/base/config.json").write_text("{}")
    (tmp_path / "models/adapters/qlora-1k-42").mkdir(parents=True)
    (tmp_path / "models/adapters/qlora-1k-42/adapter_config.json").write_text("{}")
    (tmp_path / "data/params").mkdir(parents=True)
    (tmp_path / "data/params/quantization-qlora.json").write_text(json.dumps({"load_in_4bit": True}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_each_run_gets_its_adapter_and_its_bases_quantization(workspace):
    assert run_inputs("base") == (None, None)
    assert run_inputs("base-4bit") == (None, {"load_in_4bit": True})
    adapter, quantization = run_inputs("qlora-1k-42")
    assert str(adapter) == "models/adapters/qlora-1k-42" and quantization == {"load_in_4bit": True}


@pytest.mark.parametrize("run, message", [
    ("dora-1k-42", "is not a run name like lora-2k-42 (method-scale-seed), or one of base, base-4bit"),
    ("lora-1k-42", "run `dvc repro train@lora-1k-42`"),
])
def test_what_is_missing_is_named_with_the_stage_that_makes_it(workspace, run, message):
    with pytest.raises(PipelineError, match=f".*{message.replace('(', '.').replace(')', '.')}"):
        run_inputs(run)


def test_a_missing_quantization_or_base_names_its_stage(workspace):
    (workspace / "data/params/quantization-qlora.json").unlink()
    with pytest.raises(PipelineError, match="run `dvc repro check_params`"):
        run_inputs("qlora-1k-42")
    (workspace / "models/base/config.json").unlink()
    with pytest.raises(PipelineError, match="run `dvc repro download_model`"):
        run_inputs("base")


def test_prompts_over_the_trained_length_are_refused_naming_the_param():
    check_lengths([[1] * 128, [1] * 5], 128)
    with pytest.raises(PipelineError, match="question 2 is 129 tokens.*preprocess.max_source_len .128 tokens."):
        check_lengths([[1] * 5, [1] * 129], 128)
