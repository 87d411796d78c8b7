"""Tests of medqa_scale.model.chat_format: the chat for a record, the prompt ids and the answer-only loss mask.

The tokenizer is the embedded default's byte-level BPE, trained here on a small slice of the
synthetic corpus (offline, a few seconds). Run: python -m pytest -q tests/test_chat_format.py
"""

from __future__ import annotations

import pytest

from medqa_scale.builtin import corpus
from medqa_scale.builtin.corpus import generate_pairs
from medqa_scale.builtin.model import CHAT_TEMPLATE, build_tokenizer
from medqa_scale.model.chat_format import IGNORE_INDEX, encode_example, prompt_ids, to_messages

SYSTEM = "你是一名医学助手。"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer([r["question"] + r["answer"] for r in corpus.generate_pairs(300, seed=0)], vocab_size=500)


@pytest.fixture(scope="module")
def record():
    return generate_pairs(1, seed=7)[0]


def test_tokenizer_fixture_is_what_the_tests_assume(tokenizer):
    assert len(tokenizer) >= 500  # every character of the texts is a token, past vocab_size if need be
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"


def test_to_messages_without_answer_is_the_prompt():
    assert to_messages("头痛怎么办？", None, SYSTEM) == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "头痛怎么办？"},
    ]


def test_to_messages_with_answer_appends_the_assistant_turn():
    assert to_messages("头痛怎么办？", "多休息。", SYSTEM) == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "头痛怎么办？"},
        {"role": "assistant", "content": "多休息。"},
    ]
    # An empty answer is still an answer (only None means "prompt only").
    assert to_messages("q", "", "s")[-1] == {"role": "assistant", "content": ""}


def test_prompt_ids_render_chatml_and_end_with_the_assistant_header(tokenizer, record):
    messages = to_messages(record["question"], record["answer"], SYSTEM)
    prompt = prompt_ids(tokenizer, messages)
    assert tokenizer.decode(prompt) == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{record['question']}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    header = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    assert header[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert len(header) >= 2
    assert prompt[-len(header):] == header
    # The assistant turn, when present, is left out of the prompt.
    assert prompt == prompt_ids(tokenizer, to_messages(record["question"], None, SYSTEM))


def test_encode_example_masks_exactly_the_prompt(tokenizer, record):
    messages = to_messages(record["question"], record["answer"], SYSTEM)
    prompt = prompt_ids(tokenizer, messages)
    ex = encode_example(tokenizer, messages)
    ids, labels = ex["input_ids"], ex["labels"]
    n = len(prompt)

    assert set(ex) == {"input_ids", "attention_mask", "labels"}
    assert len(ids) == len(labels) == len(ex["attention_mask"]) > n
    assert ex["attention_mask"] == [1] * len(ids)
    assert ids[:n] == prompt
    assert labels[:n] == [IGNORE_INDEX] * n
    assert labels[n:] == ids[n:]
    assert IGNORE_INDEX not in labels[n:]
    assert labels.count(IGNORE_INDEX) == n
    assert tokenizer.decode(labels[n:]) == record["answer"] + "<|im_end|>" + "\n"
    assert tokenizer.decode(ids) == tokenizer.decode(prompt) + record["answer"] + "<|im_end|>\n"


def test_encode_example_handles_text_outside_the_tokenizer_corpus(tokenizer):
    # Byte-level BPE has no unknown token: unseen characters still round-trip.
    answer = "Take 2 tablets 😀 / 每日两次"
    ex = encode_example(tokenizer, to_messages("What now?", answer, "sys"))
    n = ex["labels"].count(IGNORE_INDEX)
    assert tokenizer.decode(ex["input_ids"][n:]) == answer + "<|im_end|>\n"


def test_encode_example_rejects_a_template_that_does_not_render_the_prompt_as_prefix(tokenizer, record):
    bad = build_tokenizer([r["question"] + r["answer"] for r in corpus.generate_pairs(300, seed=0)], vocab_size=500)
    # A marker that appears only when add_generation_prompt is set, at the very start.
    bad.chat_template = "{% if add_generation_prompt %}{{ '<|endoftext|>' }}{% endif %}" + CHAT_TEMPLATE
    messages = to_messages(record["question"], record["answer"], SYSTEM)
    with pytest.raises(ValueError, match="prompt differently"):
        encode_example(bad, messages)
    # The same chat through the good template encodes fine.
    assert encode_example(tokenizer, messages)["labels"][0] == IGNORE_INDEX


def test_history_turns_come_before_the_question_and_stay_out_of_the_loss(tokenizer):
    history = [("你好", "你好，请讲。")]
    messages = to_messages("头痛怎么办？", "多休息。", SYSTEM, history=history)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    example = encode_example(tokenizer, messages)
    prompt = prompt_ids(tokenizer, messages)
    assert tokenizer.decode(prompt).endswith("<|im_start|>user\n头痛怎么办？<|im_end|>\n<|im_start|>assistant\n")
    assert "你好，请讲。" in tokenizer.decode(prompt)  # the history's answer is context
    answer = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    assert tokenizer.decode(answer) == "多休息。<|im_end|>\n"
    # The generation prompt for the same record is the same tokens.
    assert prompt_ids(tokenizer, to_messages("头痛怎么办？", None, SYSTEM, history=history)) == prompt


def test_encode_examples_in_a_batch_equals_encode_example_one_by_one(tokenizer):
    from medqa_scale.builtin.corpus import generate_pairs
    from medqa_scale.model.chat_format import encode_examples

    chats = [to_messages(r["question"], r["answer"], SYSTEM, history=[("你好", "请讲。")] if i % 3 else ())
             for i, r in enumerate(generate_pairs(60, seed=4))]
    chats.append(to_messages("What now? ", "Take a rest.", "sys"))
    assert encode_examples(tokenizer, chats) == [encode_example(tokenizer, c) for c in chats]


# Qwen3's handling of enable_thinking, cut down: with thinking off, the generation prompt and the
# final assistant turn carry an empty think block, so training and generation see the same prefix.
THINK = "{{- '<think>\\n\\n</think>\\n\\n' }}"
OFF = "enable_thinking is defined and enable_thinking is false"
THINKING_TEMPLATE = (
    "{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' }}"
    "{%- if m.role == 'assistant' and loop.last and " + OFF + " %}" + THINK + "{%- endif %}"
    "{{- m.content + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if " + OFF + " %}" + THINK + "{%- endif %}{%- endif %}")


def test_template_kwargs_reach_the_template_in_prompts_and_training_examples(tokenizer, record):
    import copy

    from medqa_scale.model.chat_format import encode_examples

    qwen3 = copy.deepcopy(tokenizer)  # with the Qwen3-like template; the fixture untouched
    qwen3.chat_template = THINKING_TEMPLATE
    messages = to_messages(record["question"], record["answer"], SYSTEM)
    off, on = {"enable_thinking": False}, {"enable_thinking": True}
    plain, without = prompt_ids(qwen3, messages, on), prompt_ids(qwen3, messages, off)
    assert prompt_ids(qwen3, messages) == without  # unset, thinking is off (chat_format.template_defaults)
    # The generation prompt ends in the empty think block.
    assert qwen3.decode(without) == qwen3.decode(plain) + "<think>\n\n</think>\n\n"
    (example,) = encode_examples(qwen3, [messages], off)
    n_prompt = sum(1 for label in example["labels"] if label == IGNORE_INDEX)
    assert example["input_ids"][:n_prompt] == without  # the prompt generation continues is the trained prefix
    assert qwen3.decode(example["input_ids"][n_prompt:]).startswith(record["answer"])
    assert encode_examples(qwen3, [messages], on)[0]["input_ids"] != example["input_ids"]  # kwargs change the render
