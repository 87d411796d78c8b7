"""medqa_scale.train.memory: peak memory, fit and hours of a training run, from params and config.json
fields alone (the model presets' architectures; nothing is downloaded).

Run: python -m pytest tests/test_memory.py -q
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from medqa_scale.train.memory import (GiB, LINEAR_MODULES, UTILISATION, card_problems, estimate_hours, estimate_training_memory,
                                fit, lora_parameter_count, parameter_counts, params_run_settings, run_tokens,
                                training_flops_per_token)
from medqa_scale.core.params import read_yaml

ROOT = Path(__file__).resolve().parents[1]
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


def arch(preset: str) -> dict:
    return read_yaml(ROOT / f"conf/model/{preset}.yaml")["model"]["arch"]


# The model cards' parameter counts (total, non-embedding), in billions.
MODEL_CARDS = {"qwen2.5-0.5b": (0.49, 0.36), "qwen2.5-1.5b": (1.54, 1.31), "qwen2.5-3b": (3.09, 2.77),
               "qwen2.5-7b": (7.61, 6.53), "qwen3-4b": (4.02, 3.6), "qwen3-8b": (8.19, 6.95), "qwen3-14b": (14.8, 13.2)}


@pytest.mark.parametrize("preset", sorted(MODEL_CARDS))
def test_each_model_presets_architecture_has_its_model_cards_parameter_count(preset):
    a = arch(preset)
    linear, other = parameter_counts(a)
    total, non_embedding = MODEL_CARDS[preset]
    embeddings = a["vocab_size"] * a["hidden_size"] * (1 if a["tie_word_embeddings"] else 2)
    assert (linear + other) / 1e9 == pytest.approx(total, rel=0.015)
    assert (linear + other - embeddings) / 1e9 == pytest.approx(non_embedding, rel=0.015)


def test_qwen3_projections_follow_head_dim_not_hidden_size():
    a = arch("qwen3-4b")  # hidden 2560, but 32 heads x 128 = 4096 query features
    per_layer = lora_parameter_count(a, 8, ["q_proj", "o_proj"]) // a["num_hidden_layers"]
    assert per_layer == 8 * (2560 + 4096) * 2


def test_all_linear_adapts_every_linear_layer_of_a_block():
    a = arch("qwen2.5-3b")
    assert lora_parameter_count(a, 8, "all-linear") == lora_parameter_count(a, 8, list(LINEAR_MODULES))
    assert lora_parameter_count(a, 8, "all-linear") > 3 * lora_parameter_count(a, 8, ATTENTION)


@pytest.mark.parametrize("method, published_gb", [("lora", 16), ("qlora", 6)])
def test_a_7b_model_at_batch_1_and_512_tokens_is_within_35_percent_of_llama_factorys_table(method, published_gb):
    """LLaMA-Factory's hardware table, 7B: LoRA 16-bit about 16 GB, QLoRA 4-bit about 6 GB, with its
    defaults (gradient checkpointing on, bf16)."""
    est = estimate_training_memory(arch("qwen2.5-7b"), method=method, batch_size=1, seq_len=512, precision="bf16",
                                   activation_checkpointing=True, lora_r=8, lora_targets=ATTENTION)
    print(f"\n7B {method}: {est['total'] / 1e9:.1f} GB against LLaMA-Factory's {published_gb} GB")
    assert 0.65 * published_gb * 1e9 <= est["total"] <= 1.35 * published_gb * 1e9


def study(**over) -> dict:
    """The study's params for planning: 512 + 512 tokens, the 80 GB card's batches, the 3B model."""
    params = {"precision": "auto", "methods": ["lora", "qlora"],
              "model": {"source": "hf", "preset": "qwen2.5-3b", "repo_id": "Qwen/Qwen2.5-3B-Instruct",
                        "arch": arch("qwen2.5-3b")},
              "hardware": {"preset": "gpu_80gb", "gpu_memory_gb": 80, "peak_tflops": 312},
              "preprocess": {"max_source_len": 512, "max_target_len": 512},
              "lora": {"r": 8, "target_modules": ATTENTION},
              "split": {"dev_size": 1000, "scales": ["20k", "50k", "100k"]},
              "train": {"num_processes": 1, "loss_chunk_tokens": 0, "method_args": {
                  "lora": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 4},
                  "qlora": {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 2,
                            "activation_checkpointing": True}},
                  "args": {"activation_checkpointing": False, "num_train_epochs": 3, "eval_steps": 0.1}}}
    for key, value in over.items():
        section, _, name = key.partition("__")
        params[section] = {**params[section], name: value} if name else value
    return params


def test_the_method_s_own_settings_win_over_the_shared_ones():
    s = params_run_settings(study(), "qlora", "bf16")
    assert (s["batch_size"], s["activation_checkpointing"], s["seq_len"], s["answer_len"]) == (8, True, 1024, 512)
    assert params_run_settings(study(), "lora", "bf16")["activation_checkpointing"] is False


def test_an_impossible_card_is_named_with_the_change_that_fits():
    params = study(model__preset="qwen2.5-7b", model__arch=arch("qwen2.5-7b"), methods=["lora"],
                   hardware={"preset": "gpu_8gb", "gpu_memory_gb": 8, "peak_tflops": 40})
    params["train"]["method_args"]["lora"] = {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 16,
                                              "activation_checkpointing": True}
    (problem,) = card_problems(params)
    assert problem.startswith("qwen2.5-7b with LORA needs ~") and "the card of hardware=gpu_8gb has 8.0 GiB" in problem
    assert "What to change: train with QLoRA" in problem and "fits" in problem
    assert card_problems(study()) == []  # the 80 GB card fits the study
    assert card_problems(study(hardware={"preset": None, "gpu_memory_gb": None, "peak_tflops": None})) == []


def test_fit_advises_nothing_when_the_run_fits_and_checkpointing_first_when_not():
    est, advice = fit(arch("qwen2.5-3b"), params_run_settings(study(), "lora", "bf16"), 80 * GiB)
    assert advice == [] and est["total"] < 72 * GiB
    _, advice = fit(arch("qwen2.5-3b"), params_run_settings(study(), "lora", "bf16"), 16 * GiB)
    assert advice[0].startswith("set train.method_args.lora.activation_checkpointing: true")


def test_tokens_of_a_run_follow_its_steps_batch_and_evaluations():
    train, evals = run_tokens(study(), "lora", 20_000)
    assert train == math.ceil(20_000 / 16) * 3 * 16 * 1024  # 3 epochs of 1250 steps of 16 full-length samples
    assert evals == 10 * 1000 * 1024  # eval_steps 0.1: ten passes over the 1000-sample dev set
    quick = study()
    quick["train"]["args"] = {**quick["train"]["args"], "max_steps": 30, "eval_steps": 0.5}
    assert run_tokens(quick, "lora", 100_000) == (30 * 16 * 1024, 2 * 1000 * 1024)


def test_hours_come_from_flops_at_the_stated_utilisation_or_from_a_measured_speed():
    a, params = arch("qwen2.5-3b"), study()
    hours, basis = estimate_hours(params, a, "lora", 20_000)
    train, evals = run_tokens(params, "lora", 20_000)
    flops = train * training_flops_per_token(a, 1024, False) + evals * training_flops_per_token(a, 1024, False) / 2
    assert hours == pytest.approx(flops / (312e12 * UTILISATION["lora"]) / 3600)
    assert basis == "FLOPs at 35% of 312 TFLOPS" and 0.5 < hours < 5
    assert 4.5 * hours < estimate_hours(params, a, "lora", 100_000)[0] < 5 * hours  # 5x the training, the same evaluations
    assert estimate_hours(params, a, "qlora", 20_000)[0] > 1.5 * hours  # checkpointing and a lower utilisation
    measured, basis = estimate_hours(params, a, "lora", 20_000, measured_tokens_per_second=10_000)
    assert basis == "measured tokens/s" and measured == pytest.approx((train + evals / 3) / 10_000 / 3600)
    no_card = study(hardware={"preset": "cpu", "gpu_memory_gb": None, "peak_tflops": None})
    assert estimate_hours(no_card, a, "lora", 20_000)[0] is None


def test_checkpointing_costs_one_more_forward_pass():
    a = arch("qwen2.5-3b")
    assert training_flops_per_token(a, 1024, True) == pytest.approx(1.5 * training_flops_per_token(a, 1024, False))
    linear, _ = parameter_counts(a)
    assert training_flops_per_token(a, 1024, False) > 4 * linear  # forward and backward, 2 FLOPs a weight each


def test_a_chunked_loss_holds_one_chunk_of_logits():
    whole = estimate_training_memory(arch("qwen2.5-3b"), method="lora", batch_size=8, seq_len=1024, precision="bf16",
                                     activation_checkpointing=False, lora_r=8, lora_targets=ATTENTION, answer_len=512)
    chunked = estimate_training_memory(arch("qwen2.5-3b"), method="lora", batch_size=8, seq_len=1024, precision="bf16",
                                       activation_checkpointing=False, lora_r=8, lora_targets=ATTENTION, answer_len=512,
                                       loss_chunk_tokens=1024)
    assert whole["logits_loss"] == 8 * 512 * 151936 * 8 and chunked["logits_loss"] == 1024 * 151936 * 8
    assert whole["total"] - chunked["total"] == whole["logits_loss"] - chunked["logits_loss"]
