"""Consistency of conf/, params.yaml and dvc.yaml: what the DAG names exists and validates."""

import ast
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from stages.params import read_yaml, validate

ROOT = Path(__file__).resolve().parents[1]


def compose(tmp_path, overrides=()):
    from dvc.utils.hydra import compose_and_dump

    out = tmp_path / "params.yaml"
    compose_and_dump(out, str(ROOT / "conf"), None, "config", str(ROOT / ".dvc/hydra_plugins"), list(overrides))
    return read_yaml(out)


def dvc_yaml():
    return YAML(typ="safe", pure=True).load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))


def lookup(params, dotted):
    node = params
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"dvc.yaml names params key {dotted!r}, missing from params.yaml"
        node = node[part]
    return node


def test_params_yaml_is_the_composed_default(tmp_path):
    # params.yaml is what `dvc exp run` composes from conf/; a drift means someone edited one side only.
    assert read_yaml(ROOT / "params.yaml") == compose(tmp_path)


def test_committed_params_validate():
    assert validate(read_yaml(ROOT / "params.yaml")) == []


def test_every_params_key_in_dvc_yaml_exists():
    params = read_yaml(ROOT / "params.yaml")
    for name, stage in dvc_yaml()["stages"].items():
        for key in stage.get("params", []):
            lookup(params, key)
        for key in re.findall(r"\$\{(?!item\.)([\w.]+)\}", str(stage)):
            lookup(params, key)


def test_every_stage_depends_on_the_modules_it_imports():
    def imported(module: Path, seen: set):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module == "stages":
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stages."):
                names = [node.module.split(".", 1)[1]]
            for n in names:
                path = ROOT / "stages" / f"{n}.py"
                if path not in seen:
                    seen.add(path)
                    imported(path, seen)
        return seen

    for name, stage in dvc_yaml()["stages"].items():
        module = ROOT / "stages" / (stage["cmd"].split("stages.")[1].split()[0] + ".py")
        deps = {ROOT / d for d in stage["deps"]}
        missing = sorted(str(p.relative_to(ROOT)) for p in imported(module, {module}) - deps)
        assert not missing, f"stage {name} imports {missing} but does not list them in deps"


def test_study_profile_carries_the_experiment_plan(tmp_path):
    p = compose(tmp_path, ["profile=study"])
    assert p["profile"] == "study"
    assert p["model"]["source"] == "hf" and p["model"]["repo_id"] == "Qwen/Qwen2.5-3B-Instruct"
    assert re.fullmatch(r"[0-9a-f]{40}", p["model"]["revision"])
    assert p["split"]["scales"] == ["20k", "50k", "100k"]
    assert p["lora"]["r"] == 8 and p["lora"]["lora_alpha"] == 32 and p["lora"]["lora_dropout"] == 0.1
    assert p["lora"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert p["train"]["batch"]["lora"] == {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 4}
    assert p["train"]["batch"]["qlora"] == {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 2}
    assert p["train"]["lr"] == pytest.approx(1e-4) and isinstance(p["train"]["lr"], float)
    args = p["train"]["args"]
    assert args["num_train_epochs"] == 3 and args["warmup_steps"] == 0.1
    assert args["eval_strategy"] == args["save_strategy"] == "steps" and args["metric_for_best_model"] == "eval_loss"
    assert p["preprocess"]["max_source_len"] == p["preprocess"]["max_target_len"] == 512
    assert p["quantization"]["bnb_4bit_quant_type"] == "nf4" and p["quantization"]["bnb_4bit_use_double_quant"]
    # The study's data file is the user's to supply until hub ingestion lands; nothing else is wrong.
    assert [q.split(":")[0] for q in validate(p)] == ["data.local_path"]


def test_lr_override_reaches_params_as_a_float(tmp_path):
    p = compose(tmp_path, ["train.lr=5e-5"])
    assert p["train"]["lr"] == 5e-05 and isinstance(p["train"]["lr"], float)
    assert "5.0e-05" in (tmp_path / "params.yaml").read_text() or "5e-05" in (tmp_path / "params.yaml").read_text()
