"""medqa_scale.generation: greedy answers in input order; an adapter changes them.

Run: python -m pytest tests/test_generation.py -q
"""

from __future__ import annotations

import pytest
import torch

from medqa_scale.builtin.corpus import generate_pairs
from medqa_scale.chat import to_messages
from medqa_scale.generation import generate_answers
from medqa_scale.modeling import add_trainable_adapter, load_base_model

LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "bias": "none", "task_type": "CAUSAL_LM", "init_lora_weights": False}


@pytest.fixture(scope="module")
def tokenizer(tiny_base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base, padding_side="left")


@pytest.fixture(scope="module")
def chats():
    return [to_messages(r["question"], None, "你是一名医学助手。") for r in generate_pairs(6, seed=3)]


def base(tiny_base):
    torch.manual_seed(0)
    return load_base_model(tiny_base, quantization=None, precision="fp32", trust_remote_code=False).eval()


def test_answers_are_greedy_deterministic_and_in_input_order(tiny_base, tokenizer, chats):
    model = base(tiny_base)
    first, speed = generate_answers(model, tokenizer, chats, batch_size=4, max_new_tokens=8)
    again, _ = generate_answers(model, tokenizer, chats, batch_size=4, max_new_tokens=8)
    assert first == again and len(first) == len(chats)
    assert all(isinstance(a, str) for a in first)
    # Each answer belongs to its own prompt: answering one chat alone gives the same text.
    alone, _ = generate_answers(model, tokenizer, chats[2:3], batch_size=1, max_new_tokens=8)
    assert alone == first[2:3]
    assert speed["samples_per_second"] > 0 and speed["tokens_per_second"] > 0 and speed["generation_seconds"] > 0


def test_an_adapter_changes_the_predictions_against_the_base_model(tiny_base, tokenizer, chats):
    answers_base, _ = generate_answers(base(tiny_base), tokenizer, chats, batch_size=6, max_new_tokens=8)
    torch.manual_seed(1)
    # init_lora_weights=False starts B away from zero: the adapter changes the forward pass.
    adapted = add_trainable_adapter(base(tiny_base), LORA, quantized=False, gradient_checkpointing=False).eval()
    answers_adapted, _ = generate_answers(adapted, tokenizer, chats, batch_size=6, max_new_tokens=8)
    assert sum(a != b for a, b in zip(answers_base, answers_adapted)) >= len(chats) // 2

    # With the adapter disabled, the wrapped model answers exactly like the base model.
    with adapted.disable_adapter():
        answers_disabled, _ = generate_answers(adapted, tokenizer, chats, batch_size=6, max_new_tokens=8)
    assert answers_disabled == answers_base


def test_generation_ignores_sampling_defaults_of_the_model(tiny_base, tokenizer, chats):
    # A model whose generation_config asks for sampling still answers greedily (do_sample=False).
    model = base(tiny_base)
    greedy, _ = generate_answers(model, tokenizer, chats, batch_size=6, max_new_tokens=8)
    model.generation_config.do_sample, model.generation_config.temperature = True, 5.0
    torch.manual_seed(123)
    again, _ = generate_answers(model, tokenizer, chats, batch_size=6, max_new_tokens=8)
    assert again == greedy
