"""Loading the base model the same way for training, evaluation and the other commands."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from medqa_scale.model.device import device, torch_dtype

log = logging.getLogger(__name__)


def quantization_config(q: dict, precision: str):
    """BitsAndBytesConfig from params `quantization`; compute dtype `auto` follows the precision."""
    from transformers import BitsAndBytesConfig

    q = dict(q)
    if q.get("bnb_4bit_compute_dtype") == "auto":
        q["bnb_4bit_compute_dtype"] = torch_dtype(precision)
    return BitsAndBytesConfig(**q)


def load_base_model(path: Path, *, quantization: dict | None, precision: str, trust_remote_code: bool,
                    attn_implementation: str | None = None):
    """The base model saved at `path`: 4-bit (bitsandbytes) when `quantization` holds
    BitsAndBytesConfig fields, as QLoRA trains it; else in `precision`. `attn_implementation` is
    transformers' own (None: its default, sdpa).

    Weights load from safetensors only, and remote code runs only if the param allows it.
    """
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": torch_dtype(precision), "use_safetensors": True, "trust_remote_code": trust_remote_code}
    if quantization is not None:
        kwargs["quantization_config"] = quantization_config(quantization, precision)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if device() == "cuda":
        kwargs["device_map"] = {"": 0}  # 4-bit weights are placed at load time, not moved later
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def add_trainable_adapter(model, lora: dict, *, quantized: bool, gradient_checkpointing: bool):
    """The model wrapped with a new LoRA adapter (params `lora`, LoraConfig fields)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    model = get_peft_model(model, LoraConfig(**lora))
    trainable, total = model.get_nb_trainable_parameters()
    log.info("%d trainable of %d parameters (%.3f%%)", trainable, total, 100 * trainable / total)
    return model


def add_saved_adapter(model, adapter_dir: Path):
    """The model with a trained adapter loaded from `adapter_dir`, ready for inference."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_dir)


def load_run_model(base: Path, adapter: Path | None, quantization: dict | None, *, precision: str,
                   trust_remote_code: bool, merge: bool):
    """A run's model for inference: the base (4-bit when `quantization` is given), with the
    adapter at `adapter` unless it is None.

    `merge` folds a full-precision base's adapter into its weights, so that answering costs what
    the base model costs; the answers stay those of the unmerged adapter. A 4-bit base keeps its
    adapter unmerged: merging into 4-bit weights would round the update away.
    """
    model = load_base_model(base, quantization=quantization, precision=precision, trust_remote_code=trust_remote_code)
    if adapter is not None:
        model = add_saved_adapter(model, adapter)
        if merge and quantization is None:
            model = model.merge_and_unload()
    return model.eval()


def merged_full_precision(base: Path, adapter: Path, quantization: dict | None, *, precision: str,
                          trust_remote_code: bool):
    """The adapter merged into full-precision weights, for export. A QLoRA adapter is merged into
    its base de-quantised from the 4-bit weights it was trained on (not into the original
    weights, which it never saw, and never into 4-bit weights)."""
    model = load_base_model(base, quantization=quantization, precision=precision, trust_remote_code=trust_remote_code)
    if quantization is not None:
        model = model.dequantize(dtype=torch_dtype(precision))
    return add_saved_adapter(model, adapter).merge_and_unload().eval()


def save_adapter(model, out: Path) -> None:
    """The adapter's weights and config, the same bytes for the same adapter.

    peft keeps target_modules as a set and writes it in the order of the process's string hash:
    an unchanged adapter would look changed to DVC and rerun its evaluation. Sorting fixes that.
    """
    model.save_pretrained(out)
    config_file = Path(out) / "adapter_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    for key in ("target_modules", "modules_to_save", "exclude_modules"):
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
