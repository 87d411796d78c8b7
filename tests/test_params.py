"""Tests of medqa_scale.core.params: reading params.yaml as DVC does (YAML 1.2), the read-only
load_params, scale labels and run names. Checking the params is tested in test_validation.py.
Run: python -m pytest -q tests/test_params.py
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from medqa_scale.core.cli import PipelineError
from medqa_scale.core.params import (BASE_RUN, METHODS, PARAMS_FILE, load_params, parse_run, read_yaml,
                                run_method, run_name, scale_size, setup_name)

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"


def test_lr_as_dvc_writes_it_loads_as_float(tmp_path):
    # `dvc exp run -S train.lr=5e-5` writes `lr: 5e-05`: no dot, which YAML 1.1 does not call a float.
    text = PARAMS.read_text(encoding="utf-8")
    new, n = re.subn(r"(?m)^(train:\n  lr: ).*$", r"\g<1>5e-05", text)
    assert n == 1
    path = tmp_path / "params.yaml"
    path.write_text(new, encoding="utf-8")

    assert read_yaml(path)["train"]["lr"] == 5e-05
    assert type(read_yaml(path)["train"]["lr"]) is float
    # The trap: PyYAML (YAML 1.1) reads it as a string.
    assert yaml.safe_load(new)["train"]["lr"] == "5e-05"
    # load_params accepts the file and gives a float.
    p = load_params(path)
    assert p["train"]["lr"] == 5e-05 and isinstance(p["train"]["lr"], float)


def test_read_yaml_follows_yaml_1_2_as_dvc_does(tmp_path):
    path = tmp_path / "p.yaml"
    text = "a: yes\nb: 1e3\nc: 0o10\nd: null\n"
    path.write_text(text, encoding="utf-8")
    assert read_yaml(path) == {"a": "yes", "b": 1000.0, "c": 8, "d": None}
    # Each of the three differs under PyYAML's YAML 1.1, which is why read_yaml does not use it.
    assert yaml.safe_load(text) == {"a": True, "b": "1e3", "c": "0o10", "d": None}


def test_load_params_missing_file(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        load_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text", ["- lora\n- qlora\n", "just text\n", ""])
def test_load_params_rejects_a_file_that_is_not_a_mapping(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PipelineError, match="mapping"):
        load_params(path)


def test_load_params_only_reads(tmp_path):
    # Validation is the check_params stage's job: a wrong value is read back as it is.
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: -1\nunknown: 1\n", encoding="utf-8")
    assert load_params(path) == {"train": {"lr": -1}, "unknown": 1}


def test_params_file_and_methods():
    assert PARAMS_FILE == Path("params.yaml")  # relative: stages run from the repository root
    assert METHODS == ("lora", "qlora")


@pytest.mark.parametrize("label,size", [("20k", 20000), ("500", 500), ("1k", 1000), (500, 500), ("100k", 100000)])
def test_scale_size(label, size):
    assert scale_size(label) == size


@pytest.mark.parametrize("label", ["", "k", "0", "0k", "01k", "2K", "1.5k", "-1", "2m", "2 k", "20kk", None, 2.5])
def test_scale_size_rejects_bad_labels(label):
    with pytest.raises(ValueError, match="not a scale label"):
        scale_size(label)


def test_scale_size_rejects_trailing_newline():
    # `$` in a regex would match before a final newline; the label must match whole.
    with pytest.raises(ValueError):
        scale_size("2k\n")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("scale", ["1k", "2k", "500", "100k"])
def test_run_name_and_parse_run_round_trip(method, scale):
    run = run_name(method, scale, 42)
    assert run == f"{method}-{scale}-42" and setup_name(method, scale) == f"{method}-{scale}"
    assert parse_run(run) == (method, scale, 42)
    assert run_method(run) == method


@pytest.mark.parametrize("name", ["base", "base-4bit", "lora-2k", "dora-2k-42", "lora-2k-x"])
def test_parse_run_refuses_what_is_not_a_training_run(name):
    with pytest.raises(ValueError, match="method-scale-seed"):
        parse_run(name)


def test_the_references_load_the_full_precision_and_the_4bit_base():
    assert BASE_RUN == "base"
    assert run_method(BASE_RUN) is None and run_method("base-4bit") == "qlora"
