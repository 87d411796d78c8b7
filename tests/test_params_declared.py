"""Every params key a stage reads is declared in its dvc.yaml entry, or deliberately undeclared
with its reason (UNDECLARED): so an edit of params reruns every stage it can change.

The shared DVC run (tests/support/dvc_repo.py) runs every stage with a recording params mapping
(tests/support/params_reads/); each process writes the keys it read. The rule is checked on
those records; the recorder and the rule are also checked on planted reads, in the fast tier.

Run: python -m pytest tests/test_params_declared.py -q
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ruamel.yaml import YAML
from support.params_reads.params_recording import Recording

from medqa_scale.core.params import REFERENCE_RUNS, parse_run

ROOT = Path(__file__).resolve().parents[1]

# Read by a stage and deliberately not declared: none changes what the stage computes.
UNDECLARED = {
    "device": "pins the GPU a stage runs on (`-S device=cuda:1` for queued experiments): where, not what",
    "hardware": "the card the fit check compares a run with: whether a run may start, not what it computes",
}
UNDECLARED_IN = {  # (stage, key): reason, for reads one stage makes
    ("train", "preprocess.max_source_len"): "the fit check's sample length; the split files it shaped are deps",
    ("train", "preprocess.max_target_len"): "the fit check's sample length; the split files it shaped are deps",
    ("train", "model.preset"): "names the model in the fit check's message",
    ("train", "model.repo_id"): "names the model in the fit check's message",
    ("train", "model.source"): "names the model in the fit check's message",
    **{("judge", f"judge.{k}"): "where and how the judge is reached, not what it is asked (a cache key holds the model "
       "and settings)" for k in ("base_url", "api_key_env", "max_concurrent", "max_requests", "timeout_s")},
}


def dvc_stages() -> dict:
    return YAML(typ="safe", pure=True).load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def stage_of(argv: list[str]) -> tuple[str, str | None]:
    """(dvc.yaml stage name, run) of a recorded process: `python -m stages.generate base-4bit` ->
    (generate_base_4bit, base-4bit)."""
    module, arg = Path(argv[0]).stem, (argv[1] if len(argv) > 1 else None)
    if arg in REFERENCE_RUNS:
        return f"{module}_{arg.replace('-', '_')}", arg
    return module, arg


def declared(stage: dict, run: str | None) -> list[str] | None:
    """The params keys a stage declares, its matrix item filled in; None for `params.yaml:` (all)."""
    keys = []
    for entry in stage.get("params", []):
        if isinstance(entry, dict):
            return None
        if run and "${item.method}" in entry:
            entry = entry.replace("${item.method}", parse_run(run)[0])
        keys.append(entry)
    return keys


def covered(read: str, keys: list[str]) -> bool:
    return any(read == k or read.startswith(k + ".") for k in keys)


def undeclared_reads(records: list[dict], stages: dict) -> list[str]:
    found = set()
    for record in records:
        name, run = stage_of(record["argv"])
        if name not in stages:
            continue  # not a stage: a command, DVC, a torchrun worker launcher
        keys = declared(stages[name], run)
        if keys is None:
            continue
        for read in record["reads"]:
            head = read.split(".")[0]
            if covered(read, keys) or head in UNDECLARED or (name, read) in UNDECLARED_IN:
                continue
            found.add(f"{name}{'@' + run if run and name in ('train', 'generate') else ''} reads {read}")
    return sorted(found)


# --- the recorder and the rule ----------------------------------------------------------------------


def test_the_recording_mapping_records_leaves_sections_and_absent_keys():
    reads = set()
    p = Recording({"train": {"lr": 0.1, "args": {"a": 1}}, "seed": 42, "methods": ["lora"]}, "", reads)
    assert p["train"]["lr"] == 0.1 and p["seed"] == 42 and p["methods"] == ["lora"]
    assert {**p["train"]["args"]} == {"a": 1}
    assert p["train"].get("kl_beta", 0.0) == 0.0
    assert reads == {"train.lr", "seed", "methods", "train.args", "train.args.a", "train.kl_beta"}
    assert json.loads(json.dumps(p)) == {"train": {"lr": 0.1, "args": {"a": 1}}, "seed": 42, "methods": ["lora"]}


def test_a_planted_undeclared_read_is_caught():
    stages = dvc_stages()
    ok = [{"argv": ["stages/train.py", "lora-1k-42"], "reads": ["train.lr", "train.method_args.lora.optim", "device"]}]
    assert undeclared_reads(ok, stages) == []
    planted = [{"argv": ["stages/generate.py", "base-4bit"], "reads": ["evaluate.batch_size", "train.lr"]},
               {"argv": ["stages/train.py", "lora-1k-42"], "reads": ["train.method_args.qlora.optim", "train"]}]
    assert undeclared_reads(planted, stages) == [
        "generate_base_4bit reads train.lr", "train@lora-1k-42 reads train", "train@lora-1k-42 reads train.method_args.qlora.optim"]


# --- on the real run ---------------------------------------------------------------------------------


def test_every_stage_declares_every_params_key_it_reads(repo, first_run):
    from support.dvc_repo import RECORDS

    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(RECORDS["dir"].glob("*.json"))]
    stages = dvc_stages()
    seen = {stage_of(r["argv"])[0] for r in records}
    # Every stage that declares params keys ran with the recorder (check_params declares the whole
    # file and validates it as a whole; data_card reads no params).
    expected = {name for name, stage in stages.items() if declared(stage, "lora-1k-42")}
    assert expected <= seen, f"no record of {sorted(expected - seen)}: the recorder did not run there"
    assert {"check_params", "data_card"} == set(stages) - expected
    assert undeclared_reads(records, stages) == [], "declare these in dvc.yaml, or list them in UNDECLARED with a reason"


def test_the_stage_docstrings_name_every_declared_param():
    # A stage's docstring says what it reads; its dvc.yaml params must be among them.
    for name, stage in dvc_stages().items():
        module = ROOT / (stage["cmd"].split("python -m ", 1)[1].split()[0].replace(".", "/") + ".py")
        doc = re.sub(r"\s+", " ", module.read_text(encoding="utf-8").split('"""')[1])
        for key in declared(stage, "lora-1k-42") or []:
            leaf = key.split(".")[-1].replace("lora", "<method>") if key.startswith("train.method_args") else key.split(".")[-1]
            assert leaf in doc or key in doc, f"{module.name} does not name {key} in its docstring"


