"""Tests of medqa_scale.core.validation, the check_params stage's rules: the committed params.yaml
passes, and every kind of mistake is reported at once, each problem naming its key and the fix.

Offline; the library checks read LoraConfig, BitsAndBytesConfig and TrainingArguments signatures.
Run: python -m pytest -q tests/test_validation.py
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from medqa_scale.core.cli import PipelineError
from medqa_scale.core.params import METHODS, load_params, read_yaml, scale_size
from medqa_scale.core.validation import (MISSING_FIX, RESERVED_TRAINING_ARGS, ParamsError, check_params,
                                    method_quantization, validate)

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
SECTIONS = ("seed", "precision", "profile", "model", "data", "preprocess", "split", "methods", "lora",
            "quantization", "train", "evaluate")


def _committed_params_text() -> str:
    """params.yaml as committed. After `dvc exp run -S train.lr=5e-5` the working file holds the
    experiment's values, so git's copy is the one to check; without git, the working file."""
    try:
        out = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=REPO, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return PARAMS.read_text(encoding="utf-8")
    return out.stdout.decode("utf-8")


def _keys(problems: list[str]) -> list[str]:
    return [p.split(":", 1)[0] for p in problems]


def _under(key: str, section: str) -> bool:
    # pydantic names the item inside a list or mapping (methods.1), so a key counts for its parents.
    return key == section or key.startswith(section + ".")


def _only_under(problems: list[str], section: str) -> bool:
    return bool(problems) and all(_under(k, section) for k in _keys(problems))


@pytest.fixture(scope="module")
def committed_text() -> str:
    return _committed_params_text()


@pytest.fixture(scope="module")
def repo_params() -> dict:
    params = load_params(PARAMS)
    # Every test below breaks one thing in these; they must start without problems.
    assert validate(copy.deepcopy(params)) == []
    return params


@pytest.fixture
def params(repo_params) -> dict:
    return copy.deepcopy(repo_params)


def test_committed_params_validate(committed_text, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(committed_text, encoding="utf-8")
    committed = read_yaml(path)
    assert isinstance(committed, dict)
    assert validate(copy.deepcopy(committed)) == []
    assert check_params(path) == committed
    assert committed["methods"] and set(committed["methods"]) <= set(METHODS)
    assert all(scale_size(s) > 0 for s in committed["split"]["scales"])
    assert isinstance(committed["train"]["lr"], float)


def test_string_lr_is_a_type_problem_naming_train_lr(repo_params):
    # `dvc exp run -S train.lr=5e-5` writes `lr: 5e-05`; PyYAML (YAML 1.1) reads that as a string.
    text = PARAMS.read_text(encoding="utf-8")
    new, n = re.subn(r"(?m)^(train:\n  lr: ).*$", r"\g<1>5e-05", text)
    assert n == 1
    bad = yaml.safe_load(new)
    assert bad["train"]["lr"] == "5e-05"
    problems = validate(bad)
    assert _keys(problems) == ["train.lr"]
    assert "valid number" in problems[0]
    assert "got '5e-05'" in problems[0]  # the repr shows the quotes: it is a string
    assert "unquoted" in problems[0]  # and the hint says how to write it


def _bad_params(params: dict) -> dict:
    bad = copy.deepcopy(params)
    bad["methods"] = ["lora", "dora"]
    bad["train"]["lr"] = -1
    bad["split"]["scales"] = ["1k", "99k"]
    bad["lora"]["rr"] = 8
    bad["train"]["args"]["learning_rate"] = 1e-4
    bad["model"]["builtin"]["pretrain"]["lr"] = "5e-05"
    return bad


BAD_KEYS = ("methods", "train.lr", "split.scales", "lora.rr", "train.args.learning_rate", "model.builtin.pretrain.lr")


def test_validate_reports_every_problem_at_once(repo_params):
    assert repo_params["data"]["sources"] == [{"builtin": repo_params["data"]["sources"][0]["builtin"]}]
    assert repo_params["data"]["sources"][0]["builtin"] < 99000 + 400
    problems = validate(_bad_params(repo_params))
    keys = _keys(problems)
    # No exact count: one mistake may give more than one line (a type error and a rule on it).
    for expected in BAD_KEYS:
        assert any(_under(k, expected) for k in keys), expected
    unrelated = [k for k in keys if not any(_under(k, expected) for expected in BAD_KEYS)]
    assert unrelated == []

    def about(key: str) -> str:
        return "\n".join(p for p, k in zip(problems, keys) if _under(k, key))

    assert "'dora'" in about("methods")
    assert "greater than 0" in about("train.lr") and "-1" in about("train.lr")
    assert "99000" in about("split.scales") and "builtin source makes" in about("split.scales")
    assert "not a field of LoraConfig" in about("lora.rr")
    assert "set train.lr" in about("train.args.learning_rate")
    assert "'5e-05'" in about("model.builtin.pretrain.lr")


def test_check_params_raises_one_params_error_listing_all(repo_params, tmp_path):
    path = tmp_path / "params.yaml"
    bad = _bad_params(repo_params)
    # JSON is YAML 1.2 and keeps the string '5e-05' quoted; PyYAML's safe_dump would write it bare,
    # and a YAML 1.2 reader would then (rightly) read it back as a float.
    path.write_text(json.dumps(bad, ensure_ascii=False, indent=1), encoding="utf-8")
    with pytest.raises(ParamsError) as info:
        check_params(path)
    err = info.value
    assert isinstance(err, PipelineError)  # so the stage exits with the message, not a traceback
    assert err.problems == validate(bad)
    msg = str(err)
    assert msg.startswith(f"{path} has {len(err.problems)} problem(s)")
    for problem in err.problems:
        assert f"  - {problem}" in msg
    for key in BAD_KEYS:
        assert f"\n  - {key}" in msg


def test_check_params_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        check_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize("value", [None, [], ["seed"], "seed: 1", 3])
def test_validate_of_a_non_mapping_is_one_problem(value):
    problems = validate(value)
    assert len(problems) == 1
    assert "mapping" in problems[0] and type(value).__name__ in problems[0]


def test_validate_empty_lists_missing_sections():
    problems = validate({})
    assert MISSING_FIX.startswith("missing; add it to conf/ (see conf/config.yaml) and recompose params.yaml")
    assert "seed: " + MISSING_FIX in problems
    for section in SECTIONS:
        assert f"{section}: {MISSING_FIX}" in problems


@pytest.mark.parametrize("path", ["seed", "model", "train", "evaluate", "train.lr", "split.scales",
                                  "preprocess.system_prompt", "lora.r"])
def test_a_missing_key_is_reported_as_missing(params, path):
    *parents, name = path.split(".")
    section = params
    for parent in parents:
        section = section[parent]
    del section[name]
    problems = validate(params)
    assert f"{path}: {MISSING_FIX}" in problems
    assert _only_under(problems, path)


@pytest.mark.parametrize("section,library", [("lora", "LoraConfig"), ("quantization", "BitsAndBytesConfig"),
                                             ("train.args", "TrainingArguments")])
def test_unknown_key_in_a_library_section_names_the_class(params, section, library):
    target = params
    for part in section.split("."):
        target = target[part]
    target["not_a_real_field"] = 1
    problems = validate(params)
    assert _keys(problems) == [f"{section}.not_a_real_field"]
    assert f"not a field of {library}" in problems[0]


@pytest.mark.parametrize("section,field,value", [("lora", "fan_in_fan_out", False),
                                                 ("quantization", "llm_int8_threshold", 6.0),
                                                 ("train.args", "max_grad_norm", 1.0)])
def test_other_fields_of_the_library_class_are_accepted(params, section, field, value):
    # The sections are open to the class's own fields, not to a list this project keeps.
    target = params
    for part in section.split("."):
        target = target[part]
    target[field] = value
    assert validate(params) == []


def test_unknown_key_in_a_project_section_is_reported(params):
    params["evaluate"]["batchsize"] = 8
    problems = validate(params)
    assert _keys(problems) == ["evaluate.batchsize"]
    assert "not a known key" in problems[0]


@pytest.mark.parametrize("name", sorted(RESERVED_TRAINING_ARGS))
def test_reserved_training_arguments_are_reported(params, name):
    params["train"]["args"][name] = 1
    problems = validate(params)
    assert f"train.args.{name}: set by the pipeline: {RESERVED_TRAINING_ARGS[name]}" in problems
    assert _only_under(problems, f"train.args.{name}")


def test_learning_rate_in_train_args_points_at_train_lr(params):
    params["train"]["args"]["learning_rate"] = 1e-4
    assert validate(params) == ["train.args.learning_rate: set by the pipeline: set train.lr"]


def test_a_scale_bigger_than_the_data_is_reported(params):
    params["split"]["scales"] = ["1k"]
    dev, test = params["split"]["dev_size"], params["split"]["test_size"]
    needed = 1000 + dev + test
    # Exactly enough records is fine; one fewer is not.
    params["data"]["sources"] = [{"builtin": needed}]
    assert validate(params) == []
    params["data"]["sources"] = [{"builtin": needed - 1}]
    problems = validate(params)
    assert _keys(problems) == ["split.scales"]
    assert f"needs {needed} records" in problems[0]
    assert f"the builtin source makes {needed - 1}" in problems[0]


@pytest.mark.parametrize("source,key,fragment", [
    ({"path": "/tmp/qa.jsonl"}, "data.sources.0.path", "outside data/external/"),
    ({"path": "data/external/../x.jsonl"}, "data.sources.0.path", "outside data/external/"),
    ({"path": "data/external/missing.jsonl"}, "data.sources.0.path", "does not exist"),
    ({"hf": "org/set"}, "data.sources.0.revision", "needs a revision"),
    ({"hf": "org/set", "url": "https://x.org/a.csv"}, "data.sources.0", "exactly one of"),
    ({"name": "only a name"}, "data.sources.0", "exactly one of"),
    ({"url": "https://x.org/a.csv", "revision": "main"}, "data.sources.0.revision", "not to url"),
    ({"url": "ftp://x.org/a.csv"}, "data.sources.0.url", "should match"),
    ({"builtin": 100, "sha256": "ab"}, "data.sources.0.sha256", "should match"),
    ({"path": "data/external/README.md", "format": "xml"}, "data.sources.0.format", "jsonl"),
    ({"builtin": 100, "fields": {"question": "q"}}, "data.sources.0.fields", "question and answer together"),
    ({"builtin": 100, "fields": {"dept": "label"}}, "data.sources.0.fields.dept", "not a known key"),
])
def test_each_bad_source_is_reported_with_its_key(params, source, key, fragment):
    params["data"]["sources"] = [source]
    problems = [p for p in validate(params) if not p.startswith("split.scales")]
    assert key in _keys(problems), problems
    assert fragment in "\n".join(problems)


def test_valid_sources_of_every_kind(params):
    params["data"]["sources"] = [
        {"builtin": 8000}, {"path": "data/external/README.md", "format": "markdown", "limit": 10},
        {"url": "https://example.org/qa.csv", "sha256": "a" * 64, "name": "web"},
        {"hf": "FreedomIntelligence/Huatuo26M-Lite", "revision": "main", "files": ["*.jsonl"],
         "fields": {"question": "question", "answer": "answer"}},
        {"modelscope": "org/set", "revision": "v1"}]
    assert validate(params) == []
    params["data"]["sources"] += [{"url": "https://example.org/a/qa.csv"}, {"url": "https://example.org/b/qa.csv"}]
    assert _keys(validate(params)) == ["data.sources"]  # both are named qa by default


@pytest.mark.parametrize("method", METHODS)
def test_a_method_without_its_batch_is_reported(params, method):
    params["methods"] = list(METHODS)
    del params["train"]["method_args"][method]
    problems = validate(params)
    assert _keys(problems) == [f"train.method_args.{method}"]
    assert "missing" in problems[0]


@pytest.mark.parametrize("how", ["null", "absent"])
def test_builtin_model_source_needs_model_builtin(params, how):
    params["model"]["source"] = "builtin"
    if how == "null":
        params["model"]["builtin"] = None
    else:
        del params["model"]["builtin"]
    problems = validate(params)
    assert _keys(problems) == ["model.builtin"]
    assert "model.source is builtin" in problems[0]


def test_method_quantization(params):
    quantization = method_quantization(params, "qlora")
    assert quantization == params["quantization"]
    quantization["load_in_4bit"] = False  # a copy: the caller may change it freely
    assert params["quantization"]["load_in_4bit"] is True
    assert method_quantization(params, "lora") is None


@pytest.mark.parametrize("seeds, key, fragment", [([], "train.seeds", "at least 1"), ([42, 42], "train.seeds", "repeat"),
                                                  ([42, -1], "train.seeds", "non-negative"),
                                                  ("42", "train.seeds", "list")])
def test_bad_seeds_are_reported(params, seeds, key, fragment):
    params["train"]["seeds"] = seeds
    problems = validate(params)
    assert _keys(problems) == [key] and fragment in problems[0].lower()


def test_several_seeds_and_a_sample_limit_are_valid(params):
    params["train"]["seeds"] = [42, 43, 44]
    params["evaluate"]["max_samples"] = params["split"]["test_size"]
    assert validate(params) == []


@pytest.mark.parametrize("value, fragment", [(0, "greater than 0"), (10**9, "more than split.test_size")])
def test_a_bad_max_samples_is_reported(params, value, fragment):
    params["evaluate"]["max_samples"] = value
    problems = validate(params)
    assert _keys(problems) == ["evaluate.max_samples"] and fragment in problems[0]


def test_an_unknown_generation_backend_is_reported(params):
    params["evaluate"]["backend"] = "tgi"
    problems = validate(params)
    assert _keys(problems) == ["evaluate.backend"] and "'transformers' or 'vllm'" in problems[0]


@pytest.mark.parametrize("primary, margin, key", [("nll", {"rouge-l": 1.0, "bleu": 1.0}, "report.margin.nll"),
                                                  ("rouge-l", {"nll": 0.02, "rouge-l": -1.0, "bleu": 1.0}, "report.margin.rouge-l")])
def test_every_compared_metric_needs_a_margin(params, primary, margin, key):
    params["report"].update(primary_metric=primary, margin=margin)
    problems = validate(params)
    assert _keys(problems) == [key] and "δ" in problems[0]


def test_an_unknown_primary_metric_is_reported(params):
    params["report"]["primary_metric"] = "accuracy"
    assert _keys(validate(params)) == ["report.primary_metric"]


def test_a_bootstrap_too_coarse_for_holm_to_call_anything_is_reported(params):
    # 2 methods x 3 scales: 13 pairs x 3 metrics = 39 p-values; 500 resamples give p >= 1/501, which
    # Holm lifts to 39/501 = 0.078 >= 0.05. Each benchmark set adds its accuracy to every pair.
    params["methods"], params["split"]["scales"] = ["lora", "qlora"], ["1k", "2k", "5k"]
    params["evaluate"]["bootstrap"]["resamples"] = 500
    params["benchmarks"] = []
    problems = validate(params)
    assert _keys(problems) == ["evaluate.bootstrap.resamples"] and "39 comparisons" in problems[0] and "0.078" in problems[0]
    params["benchmarks"] = [{"role": "domain", "builtin": "domain"}, {"role": "retention", "builtin": "retention"}]
    problems = validate(params)
    assert _keys(problems) == ["evaluate.bootstrap.resamples"] and "65 comparisons" in problems[0] and "0.130" in problems[0]
    params["evaluate"]["bootstrap"]["resamples"] = 2400
    assert validate(params) == []


@pytest.mark.parametrize("section, key, value, where, fragment", [
    ("args", "use_liger_kernel", True, "train.args.use_liger_kernel", "pip install liger-kernel"),
    (None, "attn_implementation", "flash_attention_2", "train.attn_implementation", "pip install flash-attn"),
    (None, "attn_implementation", "flash", "train.attn_implementation", "flash_attention_2"),
    (None, "loss_chunk_tokens", -1, "train.loss_chunk_tokens", "greater than or equal to 0")])
def test_a_fused_kernel_without_its_package_is_named_before_a_run(params, section, key, value, where, fragment):
    # Neither liger-kernel nor flash-attn is installed here (CPU); on a GPU with them, these are valid.
    (params["train"][section] if section else params["train"])[key] = value
    problems = validate(params)
    assert _keys(problems) == [where] and fragment in problems[0], problems


def test_the_default_attention_and_a_chunked_loss_are_valid(params):
    params["train"].update(attn_implementation="sdpa", loss_chunk_tokens=2048)
    assert validate(params) == []


def test_the_judge_win_rate_as_primary_metric_needs_the_judge_and_a_margin(params):
    params["report"]["primary_metric"] = "win-rate"
    problems = validate(params)
    assert _keys(problems) == ["report.primary_metric"] and "judge.enabled: true" in problems[0]
    params["judge"]["enabled"] = True
    assert validate(params) == []
    del params["report"]["margin"]["win-rate"]
    assert _keys(validate(params)) == ["report.margin.win-rate"]


@pytest.mark.parametrize("value", ["sk-0123456789abcdef", "my key", "1KEY"])
def test_the_judge_key_param_takes_a_variable_name_never_a_key(params, value):
    params["judge"]["api_key_env"] = value
    problems = validate(params)
    assert _keys(problems) == ["judge.api_key_env"] and "never the key itself" in problems[0]
    params["judge"]["api_key_env"] = "DEEPSEEK_API_KEY"
    assert validate(params) == []


def test_a_judge_endpoint_must_be_a_url(params):
    params["judge"]["base_url"] = "localhost:8000"
    assert _keys(validate(params)) == ["judge.base_url"]
