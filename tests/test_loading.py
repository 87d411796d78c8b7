"""medqa_scale.model.loading: the base model in full precision for LoRA, 4-bit bitsandbytes layers for
QLoRA, both for training (a new adapter) and for evaluation (a saved adapter).

Run: python -m pytest tests/test_loading.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medqa_scale.model.loading import (add_saved_adapter, add_trainable_adapter, load_base_model, load_run_model,
                                  merged_full_precision, quantization_config, save_adapter)

QUANTIZATION = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                "bnb_4bit_compute_dtype": "auto"}
LORA = {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "bias": "none",
        "task_type": "CAUSAL_LM"}


def linear4bit_layers(model) -> list[str]:
    import bitsandbytes as bnb

    return [name for name, module in model.named_modules() if isinstance(module, bnb.nn.Linear4bit)]


def test_quantization_config_auto_compute_dtype_follows_precision():
    assert quantization_config(QUANTIZATION, "fp32").bnb_4bit_compute_dtype == torch.float32
    assert quantization_config(QUANTIZATION, "bf16").bnb_4bit_compute_dtype == torch.bfloat16
    config = quantization_config({**QUANTIZATION, "bnb_4bit_compute_dtype": "float16"}, "fp32")
    assert config.bnb_4bit_compute_dtype == torch.float16
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant


def test_lora_base_loads_in_the_training_precision_without_4bit_layers(tiny_base):
    model = load_base_model(tiny_base, quantization=None, precision="fp32", trust_remote_code=False)
    assert linear4bit_layers(model) == []
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_qlora_training_model_has_4bit_nf4_base_layers_under_the_adapter(tiny_base):
    base = load_base_model(tiny_base, quantization=QUANTIZATION, precision="fp32", trust_remote_code=False)
    model = add_trainable_adapter(base, LORA, quantized=True, gradient_checkpointing=False)
    layers = linear4bit_layers(model)
    # Every linear layer of the decoder is 4-bit, the adapted ones included (under the LoRA wrapper).
    assert any(name.endswith("q_proj.base_layer") for name in layers)
    assert any(name.endswith("mlp.down_proj") for name in layers)
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert q_proj.base_layer.weight.quant_state.quant_type == "nf4"
    assert q_proj.base_layer.weight.dtype == torch.uint8  # packed 4-bit values
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_qlora_evaluation_model_has_4bit_base_layers_and_the_saved_adapter(tiny_base, tmp_path):
    trained = add_trainable_adapter(load_base_model(tiny_base, quantization=QUANTIZATION, precision="fp32",
                                                    trust_remote_code=False), LORA, quantized=True,
                                    gradient_checkpointing=False)
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                p.fill_(0.01)  # a recognisable adapter
    trained.save_pretrained(tmp_path / "adapter")

    base = load_base_model(tiny_base, quantization=QUANTIZATION, precision="fp32", trust_remote_code=False)
    model = add_saved_adapter(base, tmp_path / "adapter")
    assert any(name.endswith("q_proj.base_layer") for name in linear4bit_layers(model))
    b = dict(model.named_parameters())
    lora_b = [v for k, v in b.items() if "lora_B" in k]
    assert lora_b and all(torch.allclose(v, torch.full_like(v, 0.01)) for v in lora_b)


def test_trust_remote_code_is_passed_through_and_off_by_default(tiny_base, monkeypatch):
    from transformers import AutoModelForCausalLM

    seen = {}
    original = AutoModelForCausalLM.from_pretrained

    def spy(path, **kwargs):
        seen.update(kwargs)
        return original(path, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    load_base_model(tiny_base, quantization=None, precision="fp32", trust_remote_code=False)
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True


@pytest.mark.parametrize("quantized", [False, True])
def test_only_the_adapter_is_trainable(tiny_base, quantized):
    base = load_base_model(tiny_base, quantization=QUANTIZATION if quantized else None, precision="fp32",
                           trust_remote_code=False)
    model = add_trainable_adapter(base, LORA, quantized=quantized, gradient_checkpointing=False)
    trainable, total = model.get_nb_trainable_parameters()
    # r * (in + out) per adapted matrix: q_proj 64->64, v_proj 64->32 (one KV head of 32)
    assert trainable == 4 * (64 + 64) + 4 * (64 + 32)
    assert 0 < trainable < total


def test_a_saved_adapter_is_the_same_bytes_whatever_the_string_hash_seed(tiny_base, tmp_path):
    # peft keeps target_modules as a set; its order follows PYTHONHASHSEED unless save_adapter sorts it.
    code = ("import sys, torch\n"
            "from pathlib import Path\n"
            "from medqa_scale.model.loading import add_trainable_adapter, load_base_model, save_adapter\n"
            "torch.manual_seed(0)\n"
            "m = load_base_model(Path(sys.argv[1]), quantization=None, precision='fp32', trust_remote_code=False)\n"
            "lora = dict(r=4, lora_alpha=8, target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj'], task_type='CAUSAL_LM')\n"
            "save_adapter(add_trainable_adapter(m, lora, quantized=False, gradient_checkpointing=False), Path(sys.argv[2]))\n")
    root = Path(__file__).resolve().parents[1]
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        subprocess.run([sys.executable, "-c", code, str(tiny_base), str(tmp_path / seed)], env=env, check=True,
                       capture_output=True)
    files = {seed: {f.name: f.read_bytes() for f in (tmp_path / seed).iterdir()} for seed in ("1", "2", "3")}
    assert files["1"] == files["2"] == files["3"]
    config = json.loads(files["1"]["adapter_config.json"])
    assert config["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]


def saved_random_adapter(tiny_base, out, quantization):
    """An adapter whose B matrices are random, so that it changes the answers."""
    model = add_trainable_adapter(load_base_model(tiny_base, quantization=quantization, precision="fp32",
                                                  trust_remote_code=False), LORA, quantized=quantization is not None,
                                  gradient_checkpointing=False)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    save_adapter(model, out)
    return out


def greedy(model, tiny_base, n=6):
    """Greedy token ids for a few prompts, 12 each (random weights need not stop or decode to text)."""
    from transformers import AutoTokenizer

    from medqa_scale.builtin.corpus import generate_pairs
    from medqa_scale.model.chat_format import prompt_ids, to_messages

    tokenizer = AutoTokenizer.from_pretrained(tiny_base, padding_side="left")
    prompts = [prompt_ids(tokenizer, to_messages(r["question"], None, "你是一名医学助手。")) for r in generate_pairs(n, seed=3)]
    batch = tokenizer.pad({"input_ids": prompts}, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=False, num_beams=1, max_new_tokens=12, min_new_tokens=12,
                             pad_token_id=tokenizer.pad_token_id)
    return out[:, batch["input_ids"].shape[1]:].tolist()


def test_a_merged_lora_adapter_answers_as_the_unmerged_one_with_no_adapter_left(tiny_base, tmp_path):
    adapter = saved_random_adapter(tiny_base, tmp_path / "lora", None)
    load = lambda merge: load_run_model(tiny_base, adapter, None, precision="fp32", trust_remote_code=False,  # noqa: E731
                                        merge=merge)
    merged, unmerged = load(True), load(False)
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    assert any("lora_" in n for n, _ in unmerged.named_parameters())
    assert greedy(merged, tiny_base) == greedy(unmerged, tiny_base)
    base = load_run_model(tiny_base, None, None, precision="fp32", trust_remote_code=False, merge=True)
    ids = torch.tensor([list(range(3, 40))])
    with torch.inference_mode():
        logits = {name: m(input_ids=ids).logits for name, m in (("merged", merged), ("unmerged", unmerged), ("base", base))}
    assert torch.allclose(logits["merged"], logits["unmerged"], atol=1e-4)
    assert (logits["merged"] - logits["base"]).abs().max() > 0.1  # the adapter matters: the equality means something


def test_a_qlora_adapter_stays_unmerged_on_its_4bit_base(tiny_base, tmp_path):
    adapter = saved_random_adapter(tiny_base, tmp_path / "qlora", QUANTIZATION)
    model = load_run_model(tiny_base, adapter, QUANTIZATION, precision="fp32", trust_remote_code=False, merge=True)
    assert any(name.endswith("q_proj.base_layer") for name in linear4bit_layers(model))
    assert any("lora_B" in n for n, _ in model.named_parameters())


def test_merging_a_qlora_adapter_for_export_uses_the_dequantised_4bit_weights(tiny_base, tmp_path):
    adapter = saved_random_adapter(tiny_base, tmp_path / "qlora", QUANTIZATION)
    merged = merged_full_precision(tiny_base, adapter, QUANTIZATION, precision="fp32", trust_remote_code=False)
    assert linear4bit_layers(merged) == [] and not any("lora_" in n for n, _ in merged.named_parameters())
    assert {p.dtype for p in merged.parameters()} == {torch.float32}
    four_bit = load_run_model(tiny_base, adapter, QUANTIZATION, precision="fp32", trust_remote_code=False, merge=True)
    assert greedy(merged, tiny_base) == greedy(four_bit, tiny_base)
    ids = torch.tensor([list(range(3, 40))])
    with torch.inference_mode():
        dense, quantized = merged(input_ids=ids).logits, four_bit(input_ids=ids).logits
    # The tolerance is what bitsandbytes' CPU kernels promise on every CPU we support, not one run:
    # on AVX512-BF16 its 4-bit matmul rounds the activations, the absmax and the output to bf16
    # (unit roundoff 2^-9, bitsandbytes/backends/cpu/ops.py); elsewhere it computes in fp32. Four
    # such roundings through the layer's two matmuls in a row bound the logits' error. Merging into
    # the original weights instead misses it by the quantisation error, about 8 times this bound.
    assert torch.allclose(dense, quantized, atol=4 * 2**-9 * float(dense.abs().max()), rtol=0)
    # Merged into the original weights instead, the down projection would differ by the quantisation error.
    original = load_base_model(tiny_base, quantization=None, precision="fp32", trust_remote_code=False)
    w, w_merged = (m.model.layers[0].mlp.down_proj.weight for m in (original, merged))  # not adapted: base only
    assert not torch.equal(w, w_merged) and torch.allclose(w, w_merged, atol=0.05)
