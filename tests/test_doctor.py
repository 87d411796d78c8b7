"""medqa_scale.apps.doctor: the training-memory estimate for Qwen2.5-3B-Instruct on simulated T4 and
H100 cards, the advice for a run that does not fit, the requirements check, and the command itself
run as a user would, on a copy of params.yaml with the study's settings.

Offline and CPU-only; one subprocess (a few seconds, most of it importing torch).
Run: python -m pytest -q tests/test_doctor.py -s    (-s shows the estimates per component)
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from medqa_scale.apps.doctor import check_packages, main, package_problems, training_precision
from medqa_scale.train.memory import (FIT_FRACTION, GiB, advise, estimate_training_memory, lora_parameter_count,
                                parameter_counts)
from medqa_scale.core.params import read_yaml

ROOT = Path(__file__).resolve().parents[1]
QWEN = read_yaml(ROOT / "conf/model/qwen2.5-3b.yaml")["model"]["arch"]  # the study's model, from its preset
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
# The study: 512 prompt + 512 answer tokens, rank-8 adapters on the attention projections.
STUDY = dict(seq_len=1024, lora_r=8, lora_targets=TARGETS)


def estimate(method="lora", batch_size=4, precision="fp16", activation_checkpointing=False, **over):
    return estimate_training_memory(QWEN, **{**STUDY, **over}, method=method, batch_size=batch_size,
                                    precision=precision, activation_checkpointing=activation_checkpointing)


def reestimate(precision="fp16"):
    return functools.partial(estimate_training_memory, QWEN, precision=precision, **STUDY)


def show(label: str, est: dict) -> None:
    print(f"\n{label}: " + ", ".join(f"{k} {v / GiB:.2f} GiB" for k, v in est.items()))


def test_parameter_counts_match_qwen2_5_3b():
    linear, other = parameter_counts(QWEN)
    assert 3.08e9 < linear + other < 3.10e9  # the model card's 3.09B
    assert other == pytest.approx(151936 * 2048, rel=0.01)  # the tied embedding, nearly all of the rest
    assert lora_parameter_count(QWEN, 8, TARGETS) == 36 * 8 * ((2048 + 2048) * 2 + (2048 + 256) * 2)


def test_lora_on_a_t4_does_not_fit_and_checkpointing_is_advised_first():
    est = estimate()
    show("T4 16 GiB, LoRA fp16 batch 4, no checkpointing", est)
    assert est["total"] == sum(v for k, v in est.items() if k != "total")
    assert est["weights"] == pytest.approx(3.086e9 * 2, rel=0.01)
    assert est["total"] > 16 * GiB
    advice = advise(est, 16 * GiB, method="lora", batch_size=4, activation_checkpointing=False, reestimate=reestimate())
    assert len(advice) == 3
    assert advice[0].startswith("set train.method_args.lora.activation_checkpointing: true")
    assert advice[0].endswith("fits")
    assert "per_device_train_batch_size" in advice[1] and "QLoRA" in advice[2]

    checkpointed = estimate(activation_checkpointing=True)
    show("T4 16 GiB, LoRA fp16 batch 4, checkpointing", checkpointed)
    assert checkpointed["activations"] < 0.1 * est["activations"]
    assert checkpointed["total"] < 0.5 * est["total"]
    assert checkpointed["total"] <= FIT_FRACTION * 16 * GiB


def test_qlora_weights_are_about_a_third_of_loras():
    lora, qlora = estimate()["weights"], estimate(method="qlora")["weights"]
    # NF4 linear layers at ~0.52 byte; the 311M-parameter embedding stays 16-bit
    assert 0.25 * lora < qlora < 0.4 * lora
    assert estimate(method="qlora")["activations"] == estimate()["activations"]


def test_an_h100_fits_lora_at_batch_4_with_checkpointing():
    est = estimate(precision="bf16", activation_checkpointing=True)
    show("H100 80 GiB, LoRA bf16 batch 4, checkpointing", est)
    assert est["total"] < 0.25 * 80 * GiB
    assert advise(est, 80 * GiB, method="lora", batch_size=4, activation_checkpointing=True,
                  reestimate=reestimate("bf16")) == []


@pytest.mark.parametrize("free_gib, checkpointing", [(16, False), (12, True), (10, True)])
def test_every_recommended_setting_fits_when_re_estimated(free_gib, checkpointing):
    est = estimate(activation_checkpointing=checkpointing)
    advice = advise(est, free_gib * GiB, method="lora", batch_size=4, activation_checkpointing=checkpointing,
                    reestimate=reestimate())
    batch_lines = [line for line in advice if line.startswith("set train.method_args.lora.per_device_train_batch_size")]
    assert len(batch_lines) == 1 and batch_lines[0].endswith("fits")
    qlora_line, = (line for line in advice if "QLoRA" in line)
    for line, method in ((batch_lines[0], "lora"), (qlora_line, "qlora")):
        batch = int(re.search(r"per_device_train_batch_size: (\d+)", line).group(1))
        if method == "lora":
            assert batch in (1, 2)  # divisors of 4: the effective batch stays 4 x steps
        ckpt = checkpointing or "activation_checkpointing: true" in line
        again = estimate(method=method, batch_size=batch, activation_checkpointing=ckpt)
        assert again["total"] <= FIT_FRACTION * free_gib * GiB
        assert f"{again['total'] / GiB:.1f} GiB" in line
    if free_gib == 12:  # batch 2 with checkpointing fits; the gradient accumulation doubles
        assert "per_device_train_batch_size: 2 and multiply its gradient_accumulation_steps by 2" in batch_lines[0]


def test_advice_says_when_nothing_fits():
    advice = advise(estimate(activation_checkpointing=True), 4 * GiB, method="lora", batch_size=4,
                    activation_checkpointing=True, reestimate=reestimate())
    assert advice[-1].startswith("none of these fits")
    assert all(line.endswith("still too big") for line in advice[:-1])


def test_memory_grows_with_batch_and_sequence_and_checkpointing_saves_activations():
    for method in ("lora", "qlora"):
        by_batch = [estimate(method=method, batch_size=b)["total"] for b in (1, 2, 4, 8)]
        by_seq = [estimate(method=method, seq_len=s)["total"] for s in (256, 512, 1024, 2048)]
        assert by_batch == sorted(set(by_batch)) and by_seq == sorted(set(by_seq))
        for batch in (1, 4, 16):
            on = estimate(method=method, batch_size=batch, activation_checkpointing=True)
            off = estimate(method=method, batch_size=batch, activation_checkpointing=False)
            assert on["activations"] < off["activations"] and on["weights"] == off["weights"]
    assert estimate(precision="fp32")["activations"] == 2 * estimate(precision="bf16")["activations"]


def test_auto_precision_follows_the_device():
    assert training_precision("auto", cuda_available=True, bf16_supported=True) == "bf16"
    assert training_precision("auto", cuda_available=True, bf16_supported=False) == "fp16"
    assert training_precision("auto", cuda_available=False, bf16_supported=False) == "fp32"
    assert training_precision("fp16", cuda_available=True, bf16_supported=True) == "fp16"


def test_requirements_check_flags_a_different_version_and_passes_a_match(tmp_path):
    installed = importlib.metadata.version("packaging")
    good = tmp_path / "good.txt"
    good.write_text(f"# a comment\n\npackaging=={installed}   # why it is pinned\n"
                    "packaging==0.0.1; python_version < '3'\n", encoding="utf-8")
    assert package_problems(good) == []
    assert check_packages(good)[0] == "ok"

    bad = tmp_path / "bad.txt"
    bad.write_text(f"packaging==0.0.1\nno-such-package-medqa==1.0\npackaging=={installed}\n", encoding="utf-8")
    assert package_problems(bad) == [f"packaging: {installed} installed, ==0.0.1 pinned",
                                     "no-such-package-medqa: not installed, ==1.0 pinned"]
    status, _, advice = check_packages(bad)
    assert status == "FAIL" and advice == [f"pip install -r {bad}"]


def study_workspace(tmp: Path) -> Path:
    """tmp with requirements.txt and a params.yaml holding the study's settings, in the
    train.method_args layout; no models/base, so the doctor plans from params model.arch."""
    params = read_yaml(ROOT / "params.yaml")
    params["model"].update(source="hf", repo_id="Qwen/Qwen2.5-3B-Instruct", arch=QWEN)
    params["precision"] = "auto"
    params["preprocess"].update(max_source_len=512, max_target_len=512)
    params["split"]["scales"] = ["20k", "50k", "100k"]
    params["train"].pop("batch", None)
    params["train"]["method_args"] = {
        "lora": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 4},
        "qlora": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 2,
                  "activation_checkpointing": True, "optim": "paged_adamw_8bit"}}
    params["train"]["args"]["activation_checkpointing"] = False
    with open(tmp / "params.yaml", "w", encoding="utf-8") as f:
        YAML(typ="safe", pure=True).dump(params, f)
    shutil.copy(ROOT / "requirements.txt", tmp / "requirements.txt")
    return tmp


def test_the_command_fails_lora_on_a_t4_and_prints_the_advice(tmp_path):
    workspace = study_workspace(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "medqa_scale.apps.doctor", "--gpu-memory-gb", "16", "--no-bf16",
                           "--method", "lora", "--disk-free-gb", "100", "--skip-params-check"],
                          cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert re.search(r"ok   device: a simulated GPU without bf16 \(T4, V100\); training in fp16", out)
    assert "warn params: skipped (--skip-params-check)" in out
    assert "model: Qwen/Qwen2.5-3B-Instruct, 3085.9M parameters" in out
    fails = re.findall(r"FAIL (\S+): (.*)", out)
    assert [name for name, _ in fails] == ["memory[lora]"], out
    # The logits are made for the 512 answer tokens only: 2.3 GiB, not 4.6 for all 1024.
    assert "batch 4, checkpointing off, fp16: needs ~29.9 GiB" in fails[0][1] and "logits_loss 2.3 GiB" in fails[0][1]
    # 6.2e9 bytes of 16-bit weights, and 3 scales x 3 checkpoints of 3.7M adapter parameters x 12 bytes
    assert "ok   disk: needs ~6.1 GiB (model 5.7 GiB, checkpoints of 3 runs), 100.0 GiB free" in out
    advice = re.findall(r"advice: memory\[lora\]: (.*)", out)
    assert len(advice) == 3
    assert advice[0] == "set train.method_args.lora.activation_checkpointing: true -> 10.3 GiB of 16.0 GiB, fits"
    assert "memory[qlora]" not in out  # --method lora


def test_the_command_passes_both_methods_on_an_h100(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(study_workspace(tmp_path))
    with caplog.at_level(logging.INFO):
        main(["--gpu-memory-gb", "80", "--disk-free-gb", "100", "--skip-params-check"])  # returns: no SystemExit(1)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(":")[0] for line in lines if "memory[" in line] == ["ok   memory[lora]", "ok   memory[qlora]"]
    assert any("training in bf16" in line for line in lines)
    assert not any(line.startswith("advice") for line in lines)
