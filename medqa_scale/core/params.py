"""Reading params.yaml, and the names derived from it: scale labels, run names, source names.

Reading is all this module does. Checking the params is the check_params stage's job
(medqa_scale/core/validation.py), which runs before every other stage, so that a change to a
validation rule reruns that check alone and not the hours of training behind it.
"""

from __future__ import annotations

import re
from pathlib import Path

from ruamel.yaml import YAML

from medqa_scale.core.cli import PipelineError

PARAMS_FILE = Path("params.yaml")
METHODS = ("lora", "qlora")
SOURCE_KINDS = ("builtin", "path", "url", "hf", "modelscope")
BASE_RUN = "base"  # the run name of the base model evaluated without an adapter
BASE_4BIT_RUN = "base-4bit"  # the base loaded 4-bit as QLoRA trains on it, without an adapter
REFERENCE_RUNS = (BASE_RUN, BASE_4BIT_RUN)
SCALE_LABEL = re.compile(r"^([1-9][0-9]*)(k?)$")


def read_yaml(path: Path | str) -> dict:
    """YAML 1.2, as DVC itself reads params: `5e-05` is a float, `yes` is a string.

    PyYAML's 1.1 rules read `5e-05`, as `dvc exp run -S train.lr=5e-5` writes it, as a string.
    """
    yaml = YAML(typ="safe", pure=True)
    with open(path, encoding="utf-8") as f:
        return yaml.load(f)


def load_params(path: Path = PARAMS_FILE) -> dict:
    """params.yaml as a dict. The check_params stage has validated it before any stage runs."""
    if not path.exists():
        raise PipelineError(f"{path} not found: run from the repository root")
    params = read_yaml(path)
    if not isinstance(params, dict):
        raise PipelineError(f"{path} must hold a mapping of params; recompose it with `dvc exp run`")
    return params


def scale_size(label) -> int:
    """`20k` -> 20000, `500` -> 500. The label is the size, so no label can claim a size it lacks."""
    m = SCALE_LABEL.fullmatch(str(label))
    if not m:
        raise ValueError(f"{label!r} is not a scale label like 2k or 500")
    return int(m.group(1)) * (1000 if m.group(2) else 1)


def setup_name(method: str, scale) -> str:
    """`lora-2k`: a method at a scale, whatever the seed; the unit the study compares."""
    return f"{method}-{scale}"


def run_name(method: str, scale, seed) -> str:
    """`lora-2k-42`: one training run, as DVC names its train@ stage (method, scale, seed)."""
    return f"{method}-{scale}-{seed}"


def runs_of(methods: list[str], scales: list, seeds: list[int]) -> list[str]:
    """The runs params evaluate (params methods, split.scales, train.seeds): the references, then
    each method's runs by scale and seed."""
    return [*REFERENCE_RUNS, *(run_name(m, s, seed) for m in methods for s in scales for seed in seeds)]


def parse_run(run: str) -> tuple[str, str, int]:
    """`lora-2k-42` -> (`lora`, `2k`, 42). Reference runs (`base`, `base-4bit`) have no parts."""
    parts = run.split("-")
    if run in REFERENCE_RUNS or len(parts) != 3 or parts[0] not in METHODS or not parts[2].isdigit():
        raise ValueError(f"{run!r} is not a run name like lora-2k-42 (method-scale-seed)")
    return parts[0], parts[1], int(parts[2])


def run_method(run: str) -> str | None:
    """The method whose base a run loads: None (full precision) for `base`, qlora for `base-4bit`."""
    references = {BASE_RUN: None, BASE_4BIT_RUN: "qlora"}
    return references[run] if run in references else parse_run(run)[0]


def method_args(args: dict, method_overrides: dict) -> dict:
    """TrainingArguments fields of one method: params `train.args`, overridden by
    `train.method_args.<method>`. The one place the two are merged."""
    return {**args, **method_overrides}


def source_kind(source: dict) -> str:
    """Which of SOURCE_KINDS a data source is (the validator has checked it is exactly one)."""
    return next(k for k in SOURCE_KINDS if source.get(k) is not None)


def source_name(source: dict) -> str:
    """A data or benchmark source's name: its `name`, else `builtin` (a benchmark's: its set), the file's
    stem (path, url) or the repo id."""
    kind = source_kind(source)
    if source.get("name"):
        return str(source["name"])
    if kind == "builtin":  # a data source's builtin is a count; a benchmark's names its set
        return source["builtin"] if isinstance(source["builtin"], str) else "builtin"
    if kind in ("path", "url"):
        return Path(str(source[kind]).rstrip("/")).stem
    return str(source[kind])
