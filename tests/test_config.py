"""Consistency of conf/, params.yaml, dvc.yaml and the code's layout.

- params.yaml is the composition of conf/ (as committed: a user's `dvc exp run -S ...` rewrites
  the working copy);
- every params key dvc.yaml names exists;
- every stage lists exactly the library modules it imports, no more and no fewer, so an edit
  reruns the stages it can change and only those;
- stages never import each other, and the library never imports stages/;
- params per stage are narrow: LoRA stages do not depend on QLoRA knobs, and no stage but
  check_params depends on a key no code reads.

Run: python -m pytest tests/test_config.py -q
"""

from __future__ import annotations

import ast
import itertools
import re
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from medqa_scale.core.params import read_yaml, scale_size

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "medqa_scale"


def compose(conf_dir: Path, out_dir: Path, overrides=()) -> dict:
    from dvc.utils.hydra import compose_and_dump

    out = out_dir / "params.yaml"
    compose_and_dump(out, str(conf_dir), None, "config", str(ROOT / ".dvc/hydra_plugins"), list(overrides))
    return read_yaml(out)


def committed(path: str) -> str | None:
    """A file as committed at HEAD, or None outside a git checkout."""
    proc = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True)
    return proc.stdout.decode("utf-8") if proc.returncode == 0 else None


def dvc_yaml() -> dict:
    return YAML(typ="safe", pure=True).load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))


def stages():
    """(name, stage, module path) for every stage in dvc.yaml."""
    for name, stage in dvc_yaml()["stages"].items():
        module = stage["cmd"].split("python -m ", 1)[1].split()[0]
        yield name, stage, ROOT / (module.replace(".", "/") + ".py")


def lookup(params: dict, dotted: str):
    node = params
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"dvc.yaml names params key {dotted!r}, missing from params.yaml"
        node = node[part]
    return node


def module_path(name: str) -> Path:
    base = ROOT / name.replace(".", "/")
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def direct_imports(path: Path) -> set[str]:
    """Project modules (medqa_scale.* and stages.*) that a file imports, by dotted name."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from medqa_scale.core import hub` imports a module, not a name
            found |= {f"{node.module}.{a.name}" for a in node.names if module_path(f"{node.module}.{a.name}").exists()}
    return {n for n in found if n.split(".")[0] in (PACKAGE, "stages") and module_path(n).exists()}


def imported_files(path: Path) -> set[Path]:
    """Every project file `path` imports, directly or not; docstring-only package __init__ files
    are left out, since editing them cannot change what a stage does."""
    seen, todo = set(), [path]
    while todo:
        for name in direct_imports(todo.pop()):
            f = module_path(name)
            if f not in seen:
                seen.add(f)
                todo.append(f)
    return {f for f in seen if not (f.name == "__init__.py" and _docstring_only(f))}


def _docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


# --- params ---------------------------------------------------------------------------------


def test_committed_params_yaml_is_the_composed_default(tmp_path):
    # params.yaml as committed is what `dvc exp run` composes from conf/ as committed; a drift
    # means someone edited one side only. The working copy may hold an experiment's values.
    text = committed("params.yaml")
    if text is None:
        pytest.skip("not a git checkout")
    conf = tmp_path / "conf"
    for f in sorted((ROOT / "conf").rglob("*.yaml")):
        rel = f.relative_to(ROOT).as_posix()
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(committed(rel) or f.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "committed.yaml").write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    assert read_yaml(tmp_path / "committed.yaml") == compose(conf, out)


def test_every_params_key_in_dvc_yaml_exists():
    params = read_yaml(ROOT / "params.yaml")
    for name, stage, _ in stages():
        for key in stage.get("params", []):
            if isinstance(key, dict):  # `params.yaml:` with no keys: the whole file
                continue
            for method in params["methods"]:
                lookup(params, key.replace("${item.method}", method))
        for key in re.findall(r"\$\{(?!item\.)([\w.]+)\}", str(stage)):
            lookup(params, key)


def test_check_params_depends_on_every_param_and_gates_every_stage():
    spec = dvc_yaml()["stages"]
    assert spec["check_params"]["params"] == [{"params.yaml": None}]
    for name, stage, _ in stages():
        if name != "check_params":
            assert "data/params/valid.json" in stage["deps"], name


def test_lora_stages_do_not_depend_on_qlora_knobs():
    # The matrix resolves ${item.method}: lora reads train.method_args.lora and a quantization
    # file that holds null, qlora reads train.method_args.qlora and the 4-bit settings.
    spec = dvc_yaml()["stages"]
    for group in ("train", "generate"):
        params = spec[group]["params"]
        assert "quantization" not in params and "train" not in params and "train.method_args" not in params
        assert "data/params/quantization-${item.method}.json" in spec[group]["deps"]
    assert "train.method_args.${item.method}" in spec["train"]["params"]
    assert not any("quantization" in str(x) for x in spec["generate_base"]["params"] + spec["generate_base"]["deps"])
    # The 4-bit base is QLoRA's reference: it reads QLoRA's 4-bit settings and nothing of LoRA's.
    assert "data/params/quantization-qlora.json" in spec["generate_base_4bit"]["deps"]


def test_scoring_reads_the_answers_and_no_model_and_generation_no_metric_code():
    # Editing the metrics code must rescore without regenerating (hours on the study).
    spec = dvc_yaml()["stages"]
    assert not any(d.startswith("models/") for d in spec["evaluate"]["deps"])
    # The runs to score (methods x scales x seeds), the bootstrap and its seed: nothing of generation.
    assert spec["evaluate"]["params"] == ["seed", "methods", "split.scales", "train.seeds", "evaluate.bootstrap"]
    for name in ("generate", "generate_base", "generate_base_4bit"):
        assert "medqa_scale/evaluate/metrics.py" not in spec[name]["deps"], name
        assert "evaluate.bootstrap" not in spec[name]["params"] and "evaluate" not in spec[name]["params"], name


def test_adding_a_seed_reruns_no_existing_run():
    # The seed is part of each run's name (matrix), never a param of the train stage: `train.seeds`
    # growing from [42] to [42, 43] adds runs and leaves train@*-42 up to date.
    spec = dvc_yaml()["stages"]
    assert spec["train"]["matrix"]["seed"] == "${train.seeds}"
    # evaluate scores every run in one stage, so it reads train.seeds and rescores (seconds).
    for group in ("train", "generate"):
        assert not any(str(p).startswith(("train.seeds", "seed")) and p != "seed" for p in spec[group]["params"])
    assert "seed" not in spec["train"]["params"]  # the run's own seed comes from its name


def test_no_stage_but_check_params_depends_on_the_profile_name():
    for name, stage, _ in stages():
        if name != "check_params":
            assert not any(str(k).startswith("profile") for k in stage.get("params", [])), name


def test_study_profile_carries_the_experiment_plan(tmp_path):
    p = compose(ROOT / "conf", tmp_path, ["profile=study"])
    assert p["profile"] == "study"
    assert p["model"]["source"] == "hf" and p["model"]["repo_id"] == "Qwen/Qwen2.5-3B-Instruct"
    assert re.fullmatch(r"[0-9a-f]{40}", p["model"]["revision"])
    assert [scale_size(s) for s in p["split"]["scales"]] == [20000, 50000, 100000]
    assert p["lora"]["r"] == 8 and p["lora"]["lora_alpha"] == 32 and p["lora"]["lora_dropout"] == 0.1
    assert p["lora"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert p["train"]["method_args"]["lora"] == {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 4}
    assert p["train"]["method_args"]["qlora"] == {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 2,
                                                  "activation_checkpointing": True, "optim": "paged_adamw_8bit"}
    assert p["train"]["lr"] == pytest.approx(1e-4) and isinstance(p["train"]["lr"], float)
    args = p["train"]["args"]
    assert args["num_train_epochs"] == 3 and args["warmup_steps"] == 0.1
    assert args["eval_strategy"] == args["save_strategy"] == "steps" and args["metric_for_best_model"] == "eval_loss"
    assert p["preprocess"]["max_source_len"] == p["preprocess"]["max_target_len"] == 512
    assert p["quantization"]["bnb_4bit_quant_type"] == "nf4" and p["quantization"]["bnb_4bit_use_double_quant"]
    # Every key a stage names exists in the study profile too (a missing one fails `dvc repro`).
    for name, stage, _ in stages():
        for key in stage.get("params", []):
            if not isinstance(key, dict):
                for method in p["methods"]:
                    lookup(p, key.replace("${item.method}", method))


def test_study_profile_validates_and_reads_a_public_set_at_a_pinned_commit(tmp_path):
    from medqa_scale.core.validation import validate

    p = compose(ROOT / "conf", tmp_path, ["profile=study"])
    assert validate(p) == []
    [source] = p["data"]["sources"]
    assert source["hf"] == "FreedomIntelligence/Huatuo26M-Lite" and re.fullmatch(r"[0-9a-f]{40}", source["revision"])
    # Exams: at least one medical set and one general set, each at a commit (read in test_choices).
    assert {b["role"] for b in p["benchmarks"]} == {"domain", "retention"}
    assert all(re.fullmatch(r"[0-9a-f]{40}", b["revision"]) for b in p["benchmarks"])
    assert p["benchmark"]["scoring"] == "letter" and p["benchmark"]["k_shot"] == 0


def test_lr_override_reaches_params_as_a_float(tmp_path):
    p = compose(ROOT / "conf", tmp_path, ["train.lr=5e-5"])
    assert p["train"]["lr"] == 5e-05 and isinstance(p["train"]["lr"], float)


# --- layout and deps ----------------------------------------------------------------------------


def test_every_stage_depends_on_exactly_the_modules_it_imports():
    for name, stage, module in stages():
        code_deps = {ROOT / d for d in stage["deps"] if d.endswith(".py")}
        imported = imported_files(module) | {module}
        missing = sorted(str(p.relative_to(ROOT)) for p in imported - code_deps)
        extra = sorted(str(p.relative_to(ROOT)) for p in code_deps - imported)
        assert not missing, f"stage {name} imports {missing} but does not list them in deps"
        assert not extra, f"stage {name} lists {extra} in deps but never imports them: edits there rerun it for nothing"


def test_stages_hold_one_entry_point_per_stage_and_import_no_other_stage():
    modules = {p.stem for p in (ROOT / "stages").glob("*.py")}
    assert modules == {m.stem for _, _, m in stages()}
    for path in (ROOT / "stages").glob("*.py"):
        assert not any(n.startswith("stages") for n in direct_imports(path)), path.name


def test_package_init_files_hold_no_code():
    # They are left out of stage deps; code in them would need to be a dep.
    for path in (ROOT / PACKAGE).rglob("__init__.py"):
        assert _docstring_only(path), path


def test_every_library_module_has_a_test_file():
    for path in (ROOT / PACKAGE).rglob("*.py"):
        if path.name == "__init__.py":
            continue
        prefix = "builtin_" if path.parent.name == "builtin" else ""
        assert (ROOT / "tests" / f"test_{prefix}{path.stem}.py").exists(), path


def test_the_device_pins_where_a_stage_runs_without_being_a_declared_param():
    # `-S device=cuda:1` pins a queued experiment to a GPU; the card does not change what a stage
    # computes, so it is not a declared param and a result is reused whichever card made it.
    spec = dvc_yaml()["stages"]
    for group in ("train", "generate", "generate_base", "generate_base_4bit"):
        assert "device" not in spec[group]["params"], group
    for stage in ("train", "generate"):
        assert 'pin_device(p["device"])' in (ROOT / "stages" / f"{stage}.py").read_text(encoding="utf-8")


def test_the_card_is_checked_but_is_a_declared_param_of_no_run():
    # The card's figures (hardware.gpu_memory_gb, peak_tflops) decide whether a run may start, not
    # what it computes; a preset's batch settings are train params, and rerun what they change.
    spec = dvc_yaml()["stages"]
    for name, stage in spec.items():
        if name != "check_params":
            assert not any(str(p).startswith(("hardware", "strategy")) for p in stage.get("params", [])), name
    assert "check_fits(p, method, args, precision)" in (ROOT / "stages/train.py").read_text(encoding="utf-8")


def stage_names(spec: dict, params: dict) -> set[str]:
    """Every stage dvc.yaml defines, each matrix expanded as DVC names it (`train@lora-2k-42`)."""
    names = set()
    for name, stage in spec["stages"].items():
        if "matrix" not in stage:
            names.add(name)
            continue
        axes = [lookup(params, v[2:-1]) if isinstance(v, str) else v for v in stage["matrix"].values()]
        names |= {f"{name}@{'-'.join(map(str, item))}" for item in itertools.product(*axes)}
    return names



def stale_lock_entries(spec: dict, params: dict, lock: dict) -> list[str]:
    return sorted(set(lock["stages"]) - stage_names(spec, params))


def test_dvc_lock_holds_only_the_stages_dvc_yaml_defines():
    # DVC never drops the entry of a stage that left dvc.yaml (treeverse/dvc#5293), and after every
    # stage it parses and rewrites the whole lock with its pure-Python YAML: 38 stale entries cost
    # 1.7 s per stage here, 100 s of a whole `dvc repro`.
    spec, params = dvc_yaml(), read_yaml(ROOT / "params.yaml")
    lock = YAML(typ="safe").load((ROOT / "dvc.lock").read_text(encoding="utf-8"))
    assert "train@lora-1k-42" in stage_names(spec, params) and "train@lora-1k-42" in lock["stages"]
    stale = stale_lock_entries(spec, params, lock)
    assert not stale, f"dvc.lock holds stages dvc.yaml no longer defines: {', '.join(stale)}; delete their entries"
    planted = {"stages": {**lock["stages"], "evaluate@lora-1k-42": {}, "likelihood_base": {}}}
    assert stale_lock_entries(spec, params, planted) == ["evaluate@lora-1k-42", "likelihood_base"]


def test_the_study_trains_on_length_rebalanced_steps_and_the_embedded_default_in_random_order(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "e").mkdir()
    study = compose(ROOT / "conf", tmp_path / "s", ["profile=study"])
    assert study["train"]["args"]["train_sampling_strategy"] == "batch_rebalance"
    assert study["train"]["args"]["num_train_epochs"] == 3  # merged into the study's args, not replacing them
    assert "train_sampling_strategy" not in compose(ROOT / "conf", tmp_path / "e", [])["train"]["args"]
