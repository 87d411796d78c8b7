"""The presets of conf/: every hardware x model preset and method composes as `dvc exp run -S`
composes it and passes the params check; the hardware presets keep the study's effective batch;
docs/presets.md's table is the one the code prints.

Run: python -m pytest tests/test_presets.py -q
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medqa_scale.train.memory import card_problems, params_run_settings
from medqa_scale.core.params import read_yaml
from medqa_scale.train.presets import TABLE_END, TABLE_START, compose, gpu_presets, names, presets_markdown
from medqa_scale.core.validation import validate

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
HARDWARE, MODELS, STRATEGIES = names(CONF, "hardware"), names(CONF, "model"), names(CONF, "strategy")


def test_the_groups_hold_the_presets_the_readme_names():
    assert HARDWARE == sorted(["cpu", "gpu_8gb", "gpu_12gb", "gpu_16gb", "gpu_24gb", "gpu_48gb", "gpu_80gb"])
    assert MODELS == sorted(["qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b", "qwen3-4b", "qwen3-8b", "qwen3-14b"])
    assert STRATEGIES == ["quick", "standard", "thorough"]
    assert gpu_presets(CONF) == ["gpu_8gb", "gpu_12gb", "gpu_16gb", "gpu_24gb", "gpu_48gb", "gpu_80gb"]


@pytest.mark.parametrize("hardware", HARDWARE)
def test_every_hardware_model_and_method_composes_and_validates(hardware):
    for model in MODELS:
        for method in ("lora", "qlora"):
            params = compose(CONF, ["profile=study", f"hardware={hardware}", f"model={model}", f"methods=[{method}]"])
            assert validate(params) == [], (hardware, model, method)
            assert params["hardware"]["preset"] == hardware and params["model"]["preset"] == model
            assert params["methods"] == [method]
            margs = params["train"]["method_args"][method]
            assert margs["per_device_train_batch_size"] * margs["gradient_accumulation_steps"] == 16  # the study's
            # The model preset wins over the study profile's pinned Qwen2.5-3B commit.
            preset = read_yaml(CONF / "model" / f"{model}.yaml")["model"]
            assert {k: params["model"][k] for k in ("repo_id", "revision", "arch")} == \
                {k: preset[k] for k in ("repo_id", "revision", "arch")}


def test_the_study_without_presets_is_the_3b_preset_on_the_80_gb_card():
    plain = compose(CONF, ["profile=study"])
    preset = compose(CONF, ["profile=study", "model=qwen2.5-3b", "hardware=gpu_80gb"])
    for key in ("repo_id", "revision", "arch"):
        assert plain["model"][key] == preset["model"][key], key
    for method in ("lora", "qlora"):
        assert params_run_settings(plain, method, "bf16") == params_run_settings(preset, method, "bf16"), method
        assert plain["train"]["method_args"][method]["gradient_accumulation_steps"] == \
            preset["train"]["method_args"][method]["gradient_accumulation_steps"]
    assert plain["hardware"]["gpu_memory_gb"] is None and card_problems(plain) == []  # no card: nothing to check


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_composes_with_the_study_and_with_the_embedded_default(strategy):
    for profile in ("study", "embedded"):
        params = compose(CONF, [f"profile={profile}", f"strategy={strategy}"])
        assert validate(params) == [] and params["strategy"] == strategy
    quick = compose(CONF, ["profile=study", "strategy=quick"])
    assert quick["train"]["args"]["max_steps"] == 30 and quick["evaluate"]["max_samples"] == 50
    assert compose(CONF, ["profile=study", "strategy=thorough"])["train"]["seeds"] == [42, 43, 44]


def test_qwen3_presets_turn_thinking_off_and_qwen2_5_presets_pass_nothing():
    for model in MODELS:
        kwargs = compose(CONF, [f"model={model}"])["model"]["chat_template_kwargs"]
        assert kwargs == ({"enable_thinking": False} if model.startswith("qwen3") else {}), model


def test_the_impossible_combination_of_the_issue_names_its_fix():
    params = compose(CONF, ["profile=study", "hardware=gpu_8gb", "model=qwen2.5-7b", "methods=[lora]"])
    (problem,) = card_problems(params)
    assert "qwen2.5-7b with LORA needs ~16.3 GiB at batch 1, 1024 tokens" in problem
    assert problem.endswith("fits") and "lower preprocess.max_source_len and max_target_len to 256 each" in problem


def test_the_presets_page_table_is_the_one_the_code_prints():
    readme = (ROOT / "docs/presets.md").read_text(encoding="utf-8")
    start, end = readme.index(TABLE_START), readme.index(TABLE_END) + len(TABLE_END)
    assert readme[start:end] == presets_markdown(CONF), "run `python -m medqa_scale.apps.doctor --presets-table` into docs/presets.md"
