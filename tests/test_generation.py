"""medqa_scale.evaluate.generation: greedy answers in input order; an adapter changes them.

Run: python -m pytest tests/test_generation.py -q
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML
import torch

from medqa_scale.builtin.corpus import generate_pairs
from medqa_scale.model.chat_format import to_messages
from medqa_scale.evaluate.generation import generate_answers, generation_config, turn_end_id
from medqa_scale.model.loading import add_trainable_adapter, load_base_model

ROOT = Path(__file__).resolve().parents[1]
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
    first, speed = generate_answers(model, tokenizer, chats, 4, generation_config(tokenizer, {}, 8))
    again, _ = generate_answers(model, tokenizer, chats, 4, generation_config(tokenizer, {}, 8))
    assert first == again and len(first) == len(chats)
    assert all(isinstance(a, str) for a in first)
    # Each answer belongs to its own prompt: answering one chat alone gives the same text.
    alone, _ = generate_answers(model, tokenizer, chats[2:3], 1, generation_config(tokenizer, {}, 8))
    assert alone == first[2:3]
    assert speed["samples_per_second"] > 0 and speed["tokens_per_second"] > 0 and speed["generation_seconds"] > 0


def test_an_adapter_changes_the_predictions_against_the_base_model(tiny_base, tokenizer, chats):
    answers_base, _ = generate_answers(base(tiny_base), tokenizer, chats, 6, generation_config(tokenizer, {}, 8))
    torch.manual_seed(1)
    # init_lora_weights=False starts B away from zero: the adapter changes the forward pass.
    adapted = add_trainable_adapter(base(tiny_base), LORA, quantized=False, gradient_checkpointing=False).eval()
    answers_adapted, _ = generate_answers(adapted, tokenizer, chats, 6, generation_config(tokenizer, {}, 8))
    assert sum(a != b for a, b in zip(answers_base, answers_adapted)) >= len(chats) // 2

    # With the adapter disabled, the wrapped model answers exactly like the base model.
    with adapted.disable_adapter():
        answers_disabled, _ = generate_answers(adapted, tokenizer, chats, 6, generation_config(tokenizer, {}, 8))
    assert answers_disabled == answers_base


def test_generation_ignores_sampling_defaults_of_the_model(tiny_base, tokenizer, chats):
    # A model whose generation_config asks for sampling still answers greedily (do_sample=False).
    model = base(tiny_base)
    greedy, _ = generate_answers(model, tokenizer, chats, 6, generation_config(tokenizer, {}, 8))
    model.generation_config.do_sample, model.generation_config.temperature = True, 5.0
    torch.manual_seed(123)
    again, _ = generate_answers(model, tokenizer, chats, 6, generation_config(tokenizer, {}, 8))
    assert again == greedy


def test_no_decoding_setting_is_inherited_from_the_model(tiny_base, tokenizer, chats):
    # Qwen2.5-Instruct ships repetition_penalty 1.05 and sampling; evaluation must not pick them up.
    model = base(tiny_base)
    plain, _ = generate_answers(model, tokenizer, chats, 6, generation_config(tokenizer, {}, 12))
    model.generation_config.repetition_penalty, model.generation_config.no_repeat_ngram_size = 1.5, 2
    again, _ = generate_answers(model, tokenizer, chats, 6, generation_config(tokenizer, {}, 12))
    assert again == plain
    assert model.generation_config.repetition_penalty == 1.0 and not model.generation_config.do_sample
    penalised, _ = generate_answers(model, tokenizer, chats, 6,
                                    generation_config(tokenizer, {"repetition_penalty": 1.5, "no_repeat_ngram_size": 2}, 12))
    assert penalised != plain  # the params' own settings do apply


def test_answers_stop_at_the_chat_templates_end_of_turn_token(tiny_base, tokenizer, chats):
    end = turn_end_id(tokenizer)
    assert tokenizer.convert_ids_to_tokens(end) == "<|im_end|>"
    config = generation_config(tokenizer, {}, max_new_tokens=5)
    assert config.eos_token_id[0] == end and config.repetition_penalty == 1.0 and config.num_beams == 1
    answers, speed = generate_answers(base(tiny_base), tokenizer, chats, 6, generation_config(tokenizer, {}, 16))
    assert 0 <= speed["ran_to_max_new_tokens"] <= len(chats)
    assert not any("<|im_end|>" in a or "<|im_start|>" in a for a in answers)


def test_fine_tuned_models_on_the_embedded_default_end_their_answers():
    # The committed results of the full embedded run, each method's runs at the largest scale: answers
    # end at the template's end-of-turn token instead of running on. A tiny model's greedy answers
    # loop often (4% to 49% ran to max_new_tokens in the committed runs), against 100% if the stop
    # token were never honoured.
    params = YAML(typ="safe", pure=True).load(git_show("params.yaml"))
    runs = [f"{m}-{params['split']['scales'][-1]}-{seed}" for m in params["methods"] for seed in params["train"]["seeds"]]
    for run in runs:
        metrics = json.loads(git_show(f"metrics/generate/{run}.json"))
        assert metrics["ran_to_max_new_tokens"] < 0.75 * metrics["n_test"], run


def git_show(path: str) -> str:
    return subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_an_answer_is_cut_at_its_first_stop_token_and_one_without_any_ran_out():
    from medqa_scale.evaluate.generation import answer_tokens

    assert answer_tokens([5, 6, 2, 7, 0, 0], {2, 3}) == ([5, 6], False)  # the stop, and the padding after it, go
    assert answer_tokens([3, 9], {2, 3}) == ([], False)
    assert answer_tokens([5, 6, 7], {2, 3}) == ([5, 6, 7], True)  # ran to max_new_tokens
