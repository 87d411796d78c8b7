"""medqa_scale.model.device: precision, dtypes and peak memory on this (CPU) machine.

Run: python -m pytest tests/test_device.py -q
"""

from __future__ import annotations

import os

import pytest
import torch

from medqa_scale.model.device import device, resolve_precision, torch_dtype


def test_auto_precision_is_fp32_on_cpu_and_explicit_settings_pass_through():
    if torch.cuda.is_available():
        assert resolve_precision("auto") in ("bf16", "fp16")
    else:
        assert device() == "cpu" and resolve_precision("auto") == "fp32"
    for setting in ("bf16", "fp16", "fp32"):
        assert resolve_precision(setting) == setting


def test_torch_dtype_of_each_precision():
    assert torch_dtype("bf16") is torch.bfloat16
    assert torch_dtype("fp16") is torch.float16
    assert torch_dtype("fp32") is torch.float32
    with pytest.raises(KeyError):
        torch_dtype("int8")




def test_peak_memory_measures_an_allocation_made_and_freed_after_start():
    from medqa_scale.model.device import CPU_GROWTH, CUDA_PEAK, PeakMemory

    memory = PeakMemory(interval_s=0.001).start()
    block = torch.ones(64 * 2**20 // 4 * (1 if torch.cuda.is_available() else 4))  # 64-256 MB, then freed
    if torch.cuda.is_available():
        block = block.cuda()
    block += 1
    del block
    peak = memory.stop()
    assert memory.kind == (CUDA_PEAK if torch.cuda.is_available() else CPU_GROWTH)
    assert peak > 60
    assert PeakMemory().start().stop() < 60  # nothing allocated: little growth


@pytest.mark.parametrize("setting, visible", [("cpu", ""), ("cuda:1", "1"), ("cuda:0", "0"), ("auto", "7"), ("cuda", "7")])
def test_pin_device_shows_the_process_only_the_chosen_device(monkeypatch, setting, visible):
    from medqa_scale.model.device import pin_device

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")  # what the launcher set: auto leaves it
    pin_device(setting)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == visible


def test_a_stage_pinned_to_the_cpu_sees_no_gpu():
    import subprocess
    import sys

    code = "from medqa_scale.model.device import pin_device, device; pin_device('cpu'); print(device())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "cpu"


@pytest.mark.parametrize("method, optim, loaded", [
    ("lora", "adamw_torch", False),  # full precision, torch's AdamW: no bitsandbytes
    ("", "adamw_torch", False),  # the base model (no method): none either
    ("qlora", "adamw_torch", True),  # a 4-bit model needs it (qlora-* runs and base-4bit)
    ("lora", "lion_32bit", True),  # so do its optimizers, 8-bit or not
])
def test_bitsandbytes_is_imported_only_by_runs_that_use_it(method, optim, loaded):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import sys; from medqa_scale.model.device import keep_bitsandbytes_out, needs_bitsandbytes;"
            "needs_bitsandbytes(sys.argv[1] or None, sys.argv[2]) or keep_bitsandbytes_out();"
            "import peft; from transformers import Trainer; from transformers.utils import is_bitsandbytes_available;"
            "print(sys.modules.get('bitsandbytes') is not None, is_bitsandbytes_available(), peft.import_utils.is_bnb_available())")
    out = subprocess.run([sys.executable, "-c", code, method, optim], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(root)}).stdout
    assert out.split() == [str(loaded)] * 3
