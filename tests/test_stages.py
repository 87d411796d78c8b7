"""The stage entry points, run as DVC runs them (`python -m stages.<name>`) in a small workspace
laid out like the repository: a tiny base model, split files and a params.yaml.

- check_params stops bad params with one message and writes nothing; good params give the
  same bytes whatever the rules;
- train keeps the adapter of the best checkpoint, not the last, on a run whose last evaluation
  is worse than an earlier one, and cleans up what a killed run left;
- generate loads the QLoRA base 4-bit with the adapter unmerged and merges a LoRA adapter into the
  full-precision base; evaluate scores the answers apart, per sample.

Run: python -m pytest tests/test_stages.py -q
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from safetensors.torch import load_file

from medqa_scale.builtin.corpus import generate_pairs
from medqa_scale.model.chat_format import to_messages
from medqa_scale.core.params import read_yaml

ROOT = Path(__file__).resolve().parents[1]
SYSTEM = "你是一名医学助手。"


def stage(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=workspace, env=env, capture_output=True, text=True)


def write_params(workspace: Path, params: dict) -> None:
    yaml = YAML(typ="safe", pure=True)
    with open(workspace / "params.yaml", "w", encoding="utf-8") as f:
        yaml.dump(params, f)


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def chat_records(pairs: list[dict], answer=lambda a: a) -> list[dict]:
    return [{**r, "messages": to_messages(r["question"], answer(r["answer"]), SYSTEM)} for r in pairs]


def small_params() -> dict:
    p = copy.deepcopy(read_yaml(ROOT / "params.yaml"))
    p["split"].update(scales=["64"], dev_size=16, test_size=8)
    p["data"]["sources"] = [{"builtin": 200}]
    p["train"]["lr"] = 1.0e-2
    p["train"]["method_args"] = {m: {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1}
                                 for m in ("lora", "qlora")}
    p["train"]["args"].update(eval_steps=2, save_steps=2, save_total_limit=2, logging_steps=1,
                              per_device_eval_batch_size=16, disable_tqdm=True)
    p["evaluate"].update(batch_size=8, max_new_tokens=8)
    return p


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_base) -> Path:
    """Base model, split files and params as the stages before train leave them, plus
    data/params/ from a real check_params run."""
    ws = tmp_path_factory.mktemp("workspace")
    shutil.copytree(tiny_base, ws / "models" / "base")
    pairs = generate_pairs(88, seed=5)
    # Train answers in Latin letters, dev and test answers in Chinese: the longer the training,
    # the worse the dev loss, so the last evaluation is worse than an earlier one.
    write_jsonl(ws / "data/split/train-64.jsonl",
                chat_records(pairs[:64], lambda a: " ".join(f"x{ord(c) % 7}" for c in a[:12])))
    write_jsonl(ws / "data/split/dev.jsonl", chat_records(pairs[64:80]))
    write_jsonl(ws / "data/split/test.jsonl", chat_records(pairs[80:]))
    write_params(ws, small_params())
    proc = stage(ws, "stages.check_params")
    assert proc.returncode == 0, proc.stderr
    return ws


# --- check_params -------------------------------------------------------------------------------


def test_check_params_writes_the_gate_and_each_methods_quantization(workspace):
    assert json.loads((workspace / "data/params/valid.json").read_text()) == {"params.yaml": "valid"}
    assert json.loads((workspace / "data/params/quantization-lora.json").read_text()) is None
    qlora = json.loads((workspace / "data/params/quantization-qlora.json").read_text())
    assert qlora == small_params()["quantization"]


def test_check_params_stops_bad_params_with_one_message_naming_every_key(tmp_path):
    p = small_params()
    p["methods"] = ["lora", "dora"]
    p["train"]["lr"] = -1
    p["split"]["scales"] = ["9999k"]
    p["lora"]["rank"] = 8
    write_params(tmp_path, p)
    proc = stage(tmp_path, "stages.check_params")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    for key in ("methods.1", "train.lr", "split.scales", "lora.rank"):
        assert f"- {key}:" in proc.stderr, key
    assert proc.stderr.count("params.yaml has") == 1
    assert not (tmp_path / "data").exists()


def test_check_params_gate_is_the_same_bytes_for_other_valid_params(workspace, tmp_path):
    p = small_params()
    p["train"]["lr"] = 3e-4
    p["quantization"]["bnb_4bit_use_double_quant"] = False
    write_params(tmp_path, p)
    assert stage(tmp_path, "stages.check_params").returncode == 0
    for name in ("valid.json", "quantization-lora.json"):
        assert (tmp_path / "data/params" / name).read_bytes() == (workspace / "data/params" / name).read_bytes()
    assert (tmp_path / "data/params/quantization-qlora.json").read_bytes() != \
        (workspace / "data/params/quantization-qlora.json").read_bytes()


# --- train --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(workspace):
    # A temporary directory that a killed run left behind: the stage removes it before it starts.
    stale = workspace / "models/adapters/.lora-64-42.killed.tmp"
    stale.mkdir(parents=True)
    (stale / "adapter_model.safetensors").write_bytes(b"half-written")
    proc = stage(workspace, "stages.train", "lora-64-42")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workspace


def eval_losses(checkpoint_dir: Path) -> dict[int, float]:
    state = json.loads((checkpoint_dir / "trainer_state.json").read_text())
    return {e["step"]: e["eval_loss"] for e in state["log_history"] if "eval_loss" in e}


def test_train_writes_its_outputs_and_removes_what_a_killed_run_left(trained):
    run = "lora-64-42"
    assert (trained / f"models/adapters/{run}/adapter_model.safetensors").exists()
    assert (trained / f"dvclive/{run}/plots/metrics/eval/loss.tsv").exists()
    metrics = json.loads((trained / f"metrics/train/{run}.json").read_text())
    assert metrics["n_train"] == 64 and metrics["global_steps"] == 8
    info = json.loads((trained / f"metrics/runinfo/train-{run}.json").read_text())
    assert info["revisions"]["model"] == {"source": "test", "seed": 0}
    assert set(info["revisions"]["data"]) == {"data/split/train-64.jsonl", "data/split/dev.jsonl"}
    assert not list((trained / "models/adapters").glob(".*"))  # neither the stale nor a new temp dir


def test_train_keeps_the_best_checkpoint_not_the_last(trained):
    [scratch] = (trained / "models/checkpoints").glob("lora-64-42-*")
    checkpoints = sorted(scratch.glob("checkpoint-*"),
                         key=lambda p: int(p.name.split("-")[1]))
    losses = eval_losses(checkpoints[-1])
    best_step = min(losses, key=losses.get)
    last_step = max(losses)
    # The premise: this run's last evaluation is worse than an earlier one.
    assert losses[last_step] > losses[best_step] and best_step != last_step
    metrics = json.loads((trained / "metrics/train/lora-64-42.json").read_text())
    assert metrics["best_step"] == best_step and metrics["best_eval_loss"] == pytest.approx(losses[best_step])

    saved = load_file(trained / "models/adapters/lora-64-42/adapter_model.safetensors")
    best = load_file(scratch / f"checkpoint-{best_step}/adapter_model.safetensors")
    last = load_file(scratch / f"checkpoint-{last_step}/adapter_model.safetensors")
    assert set(saved) == set(best) == set(last)
    assert all((saved[k] == best[k]).all() for k in saved)
    assert any((saved[k] != last[k]).any() for k in saved)


def test_generate_answers_and_evaluate_scores_them_apart(trained):
    proc = stage(trained, "stages.generate", "lora-64-42")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (trained / "data/predictions/lora-64-42.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8 and set(json.loads(lines[0])) == {"id", "group", "question", "reference", "prediction", "ran_out"}
    speed = json.loads((trained / "metrics/generate/lora-64-42.json").read_text())
    assert speed["ran_to_max_new_tokens"] == sum(json.loads(line)["ran_out"] for line in lines) and "ran_out" not in speed
    assert speed["adapter"] == "merged" and speed["n_test"] == 8 and speed["samples_per_second"] > 0
    info = json.loads((trained / "metrics/runinfo/generate-lora-64-42.json").read_text())
    assert info["generation_config"]["do_sample"] is False and info["generation_config"]["repetition_penalty"] == 1.0
    proc = stage(trained, "stages.evaluate", "lora-64-42")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((trained / "metrics/evaluate/lora-64-42.json").read_text())
    assert metrics["n_test"] == 8 and 0 <= metrics["rouge-l"] <= 100
    assert metrics["interval"]["rouge-l"]["low"] <= metrics["rouge-l"] <= metrics["interval"]["rouge-l"]["high"]
    scores = [json.loads(line) for line in (trained / "data/scores/lora-64-42.jsonl").read_text().splitlines()]
    assert [s["id"] for s in scores] == [json.loads(line)["id"] for line in lines]
    assert sum(s["rouge-l"] for s in scores) / 8 == pytest.approx(metrics["rouge-l"])


def test_generate_scores_the_reference_answers_and_evaluate_sums_them_up(trained):
    import math

    if not (trained / "metrics/likelihood/lora-64-42.json").exists():  # run alone, not after the test above
        assert all(stage(trained, s, "lora-64-42").returncode == 0 for s in ("stages.generate", "stages.evaluate"))
    rows = [json.loads(line) for line in (trained / "data/likelihood/lora-64-42.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (trained / "data/split/test.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [t["id"] for t in test] and all(r["nll_stats"][1] > 0 for r in rows)
    metrics = json.loads((trained / "metrics/likelihood/lora-64-42.json").read_text())
    total = sum(r["nll_stats"][0] for r in rows) / sum(r["nll_stats"][1] for r in rows)
    assert metrics["nll"] == pytest.approx(total) and metrics["perplexity"] == pytest.approx(math.exp(total))
    assert metrics["interval"]["nll"]["low"] <= metrics["nll"] <= metrics["interval"]["nll"]["high"]
    assert all(stage(trained, s, "base").returncode == 0 for s in ("stages.generate", "stages.evaluate"))
    base = json.loads((trained / "metrics/likelihood/base.json").read_text())
    assert base["answer_tokens"] == metrics["answer_tokens"] and base["nll"] != metrics["nll"]


def test_evaluate_stops_when_the_likelihood_file_holds_other_questions(trained, tmp_path):
    if not (trained / "data/likelihood/lora-64-42.jsonl").exists():
        assert stage(trained, "stages.generate", "lora-64-42").returncode == 0
    ws = tmp_path / "ws"
    for part in ("data/predictions", "data/likelihood"):
        shutil.copytree(trained / part, ws / part)
    write_params(ws, small_params())
    nll = ws / "data/likelihood/lora-64-42.jsonl"
    nll.write_text("\n".join(nll.read_text().splitlines()[1:]) + "\n")
    proc = stage(ws, "stages.evaluate", "lora-64-42")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "data/likelihood/lora-64-42.jsonl scores other test questions" in proc.stderr
    assert "dvc repro -f generate@lora-64-42" in proc.stderr
    assert not (ws / "metrics/evaluate/lora-64-42.json").exists() and not (ws / "metrics/likelihood/lora-64-42.json").exists()


def test_evaluate_max_samples_answers_the_first_test_questions(trained, tmp_path):
    ws = tmp_path / "ws"
    for part in ("models/base", "data/split", "data/params", "models/adapters/lora-64-42"):
        shutil.copytree(trained / part, ws / part)
    p = small_params()
    p["evaluate"]["max_samples"] = 3
    write_params(ws, p)
    assert stage(ws, "stages.generate", "lora-64-42").returncode == 0
    ids = [json.loads(line)["id"] for line in (ws / "data/predictions/lora-64-42.jsonl").read_text().splitlines()]
    test = [json.loads(line)["id"] for line in (ws / "data/split/test.jsonl").read_text().splitlines()]
    assert ids == test[:3]


def copy_workspace(workspace: Path, dest: Path, **args) -> Path:
    """The workspace's base model, data and params (train.args updated with `args`), checked."""
    for part in ("models/base", "data/split"):
        shutil.copytree(workspace / part, dest / part)
    p = small_params()
    p["train"]["args"].update(args)
    write_params(dest, p)
    assert stage(dest, "stages.check_params").returncode == 0
    return dest


def test_a_killed_run_resumes_from_its_last_complete_checkpoint(workspace, tmp_path):
    args = {"num_train_epochs": 3}  # 24 steps, a checkpoint every 2
    whole = copy_workspace(workspace, tmp_path / "whole", **args)
    assert stage(whole, "stages.train", "lora-64-42").returncode == 0
    killed = copy_workspace(workspace, tmp_path / "killed", **args)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "stages.train", "lora-64-42"], cwd=killed, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not list((killed / "models/checkpoints").glob("lora-64-42-*/checkpoint-6/complete.json")):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "models/adapters/lora-64-42").exists()

    again = stage(killed, "stages.train", "lora-64-42")
    assert again.returncode == 0, again.stderr[-3000:]
    step = int(re.search(r"resuming lora-64-42 from step (\d+)", again.stderr).group(1))
    metrics = json.loads((killed / "metrics/train/lora-64-42.json").read_text())
    reference = json.loads((whole / "metrics/train/lora-64-42.json").read_text())
    assert step >= 6 and metrics["resumed_from_step"] == step and metrics["global_steps"] == 24
    assert metrics["best_eval_loss"] == pytest.approx(reference["best_eval_loss"], rel=0.02)
    steps = [json.loads(line)["step"] for line in (killed / "dvclive/lora-64-42/steps.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == list(range(1, 25))  # every step logged once, before and after the kill
    assert reference["resumed_from_step"] == 0 and metrics["train_runtime_s"] > 0


@pytest.mark.slow  # two torchrun workers end to end
def test_two_processes_train_with_ddp_on_cpu_and_only_rank_0_writes(workspace, tmp_path):
    ws = copy_workspace(workspace, tmp_path / "ddp", num_train_epochs=2)
    p = read_yaml(ws / "params.yaml")
    p["train"]["num_processes"] = 2
    p["train"]["method_args"]["lora"]["per_device_train_batch_size"] = 4  # 2 x 4: the same 8 samples a step
    write_params(ws, p)
    assert stage(ws, "stages.check_params").returncode == 0
    proc = stage(ws, "stages.train", "lora-64-42")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "with 2 processes" in proc.stderr and proc.stderr.count("best eval loss") == 1  # rank 0 reports alone
    info = json.loads((ws / "metrics/runinfo/train-lora-64-42.json").read_text())
    assert info["training_arguments"]["ddp_backend"] == "gloo"
    logged = [json.loads(line) for line in (ws / "dvclive/lora-64-42/steps.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in logged if "loss" in e]
    assert [e["step"] for e in logged if "loss" in e] == list(range(1, 17))  # each step once, not once per rank
    assert sum(losses[-4:]) < sum(losses[:4])  # it learns
    assert json.loads((ws / "metrics/train/lora-64-42.json").read_text())["global_steps"] == 16
    assert (ws / "models/adapters/lora-64-42/adapter_model.safetensors").exists()


def test_tensorboard_event_files_land_beside_the_curves_when_asked(workspace, tmp_path):
    ws = copy_workspace(workspace, tmp_path / "tb")
    p = read_yaml(ws / "params.yaml")
    p["train"]["tensorboard"] = True
    write_params(ws, p)
    assert stage(ws, "stages.check_params").returncode == 0
    proc = stage(ws, "stages.train", "lora-64-42")
    assert proc.returncode == 0, proc.stderr[-3000:]
    [events] = (ws / "dvclive/lora-64-42/tensorboard").glob("events.out.tfevents.*")
    assert events.stat().st_size > 0


def test_a_nan_loss_stops_the_run_with_a_message_and_no_adapter(workspace, tmp_path):
    ws = copy_workspace(workspace, tmp_path / "nan")
    p = read_yaml(ws / "params.yaml")
    p["train"]["lr"] = 1.0e8
    write_params(ws, p)
    assert stage(ws, "stages.check_params").returncode == 0
    proc = stage(ws, "stages.train", "lora-64-42")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(r"(loss|grad_norm) became (nan|inf) at step \d+.*lower train.lr", proc.stderr)
    assert not (ws / "models/adapters/lora-64-42").exists() and not (ws / "metrics/train/lora-64-42.json").exists()


def test_a_run_that_cannot_fit_the_card_stops_before_anything_loads(workspace, tmp_path):
    """check_params stops a sweep that cannot fit the card params name; the train stage, run on its
    own, checks again with the downloaded model's config.json and stops before loading it."""
    p = small_params()
    p["hardware"] = {"preset": "tiny", "gpu_memory_gb": 0.001, "peak_tflops": None}
    write_params(tmp_path, p)
    proc = stage(tmp_path, "stages.check_params")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "the runs would not fit the card" in proc.stderr and proc.stderr.count("What to change:") == 2  # each method
    assert "the card of hardware=tiny has 0.0 GiB" in proc.stderr and not (tmp_path / "data").exists()

    ws = copy_workspace(workspace, tmp_path / "train")  # checked with no card; then the card is set
    write_params(ws, p)
    proc = stage(ws, "stages.train", "lora-64-42")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(r"the embedded model with LORA needs ~[\d.]+ GiB at batch 8, \d+ tokens", proc.stderr)
    assert "Loading" not in proc.stderr and not (ws / "models/adapters/lora-64-42").exists()


# --- the bases the stages load ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_train_loads_qlora_4bit_and_lora_unquantized(workspace, monkeypatch, method):
    import importlib

    import bitsandbytes as bnb

    monkeypatch.chdir(workspace)
    model = importlib.import_module("stages.train").load_model(small_params(), method, "fp32")
    layers = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    if method == "qlora":
        assert any(n.endswith("q_proj.base_layer") for n in layers)
    else:
        assert layers == []
    assert any("lora_A" in n for n, _ in model.named_parameters())


@pytest.mark.parametrize("run, adapter", [("base", "none"), ("base-4bit", "none"), ("lora-test-42", "merged"),
                                          ("qlora-test-42", "unmerged on 4-bit base")])
def test_generate_loads_each_run_as_it_was_trained(workspace, monkeypatch, run, adapter):
    import importlib

    if run not in ("base", "base-4bit") and not (workspace / f"models/adapters/{run}").exists():
        monkeypatch.chdir(workspace)
        importlib.import_module("stages.train").load_model(small_params(), run.split("-")[0], "fp32").save_pretrained(
            workspace / f"models/adapters/{run}")
    proc = stage(workspace, "stages.generate", run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((workspace / f"metrics/generate/{run}.json").read_text())
    assert metrics["adapter"] == adapter and metrics["base_4bit"] == (run.startswith("qlora") or run == "base-4bit")


def _exam_item(i: int, file: str, answer) -> dict:
    return {"id": f"s:{file}:{i}", "set": "s", "role": "domain", "origin": {"file": file, "location": f"line {i}"},
            "question": f"问{i}", "options": {"A": "甲", "B": "乙", "C": "丙"}, "answer": answer}


def test_the_benchmark_stage_draws_shots_from_dev_files_and_sets_items_aside_by_reason():
    from medqa_scale.core.cli import PipelineError
    from stages.benchmark import prepare

    items = ([_exam_item(i, "dev/x_dev.csv", ["A"]) for i in range(4)] + [_exam_item(i, "val/x_val.csv", ["B"]) for i in range(5)]
             + [_exam_item(9, "test/x_test.csv", None), _exam_item(10, "val/x_val.csv", ["A", "C"])])
    settings = {"k_shot": 2, "shot_files": "*dev*", "multiple_answer": "skip"}
    s = prepare(items, settings, seed=1)
    assert len(s["shots"]) == 2 and all(shot["origin"]["file"] == "dev/x_dev.csv" for shot in s["shots"])
    assert s["shots"] == prepare(items, settings, seed=1)["shots"]  # drawn from the seed
    assert [i["origin"]["file"] for i in s["items"]] == ["val/x_val.csv"] * 5
    assert s["set_aside"] == {"shots": 4, "unlabelled": 1, "multiple_answer": 1}
    exact = prepare(items, {**settings, "k_shot": 0, "multiple_answer": "exact"}, seed=1)
    assert len(exact["items"]) == 4 + 5 + 1 and exact["shots"] == [] and exact["set_aside"]["shots"] == 0  # dev scored too
    with pytest.raises(PipelineError, match="k_shot is 5"):
        prepare(items, {**settings, "k_shot": 5}, seed=1)
