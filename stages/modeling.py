"""Loading the base model the same way for training and evaluation."""

from __future__ import annotations

from pathlib import Path

from stages.runinfo import device, torch_dtype

BASE = Path("models/base")


def quantization_config(q: dict, precision: str):
    """BitsAndBytesConfig from params `quantization`; compute dtype `auto` follows the precision."""
    from transformers import BitsAndBytesConfig

    q = dict(q)
    if q.get("bnb_4bit_compute_dtype") == "auto":
        q["bnb_4bit_compute_dtype"] = torch_dtype(precision)
    return BitsAndBytesConfig(**q)


def load_base_model(p: dict, *, quantized: bool, precision: str):
    """The base model from models/base: 4-bit NF4 (bitsandbytes) for QLoRA, else in `precision`.

    Weights load from safetensors only, and remote code runs only if model.trust_remote_code.
    """
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": torch_dtype(precision), "use_safetensors": True,
              "trust_remote_code": p["model"]["trust_remote_code"]}
    if quantized:
        kwargs["quantization_config"] = quantization_config(p["quantization"], precision)
    if device() == "cuda":
        kwargs["device_map"] = {"": 0}  # 4-bit weights are placed at load time, not moved later
    return AutoModelForCausalLM.from_pretrained(BASE, **kwargs)
