"""medqa_scale.evaluate.likelihood: the reference answer's NLL under the tiny base model (random
weights), counted as the training loss counts it, the same whatever the batching.

Run: python -m pytest -q tests/test_likelihood.py
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from medqa_scale.builtin.corpus import generate_pairs
from medqa_scale.builtin.model import CHAT_TEMPLATE
from medqa_scale.evaluate import likelihood
from medqa_scale.evaluate.likelihood import answer_nll, examples
from medqa_scale.model.chat_format import IGNORE_INDEX, encode_examples, to_messages
from medqa_scale.model.loading import load_base_model

SYSTEM = "你是一名医学助手。"


@pytest.fixture(scope="module")
def tokenizer(tiny_base):
    return AutoTokenizer.from_pretrained(tiny_base)


@pytest.fixture(scope="module")
def model(tiny_base):
    return load_base_model(tiny_base, quantization=None, precision="fp32", trust_remote_code=False).eval()


@pytest.fixture(scope="module")
def chats():
    """Chats of mixed lengths: whole answers, answers cut to a few characters, one answer repeated."""
    records = generate_pairs(7, seed=3)
    answers = [r["answer"] for r in records]
    answers[1], answers[4], answers[6] = answers[1][:3], answers[4][:8], answers[6] * 2
    return [to_messages(r["question"], a, SYSTEM) for r, a in zip(records, answers)]


@pytest.fixture(scope="module")
def encoded(tokenizer, chats):
    return examples(tokenizer, chats)


def own_loss(model, example) -> float:
    """The model's own loss on one example: the mean NLL over the shifted label tokens."""
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([example["input_ids"]]), labels=torch.tensor([example["labels"]]))
    return float(out.loss)


def test_the_examples_are_what_training_encodes(tokenizer, chats, encoded):
    assert encoded == encode_examples(tokenizer, chats)
    lengths = [len(e["input_ids"]) for e in encoded]
    assert len(set(lengths)) == len(lengths) and max(lengths) > min(lengths) + 20  # mixed lengths


def test_answer_nll_per_token_is_the_models_own_loss(model, tokenizer, encoded):
    scored = answer_nll(model, encoded, batch_size=1, pad_id=tokenizer.pad_token_id)
    assert len(scored) == len(encoded)
    for example, s in zip(encoded, scored):
        assert s["nll"] > 0
        assert s["nll"] / s["tokens"] == pytest.approx(own_loss(model, example), rel=1e-5)


def test_the_total_over_a_padded_batch_is_the_models_batch_loss(model, tokenizer, encoded):
    # The model's loss over a right-padded batch averages over every label token of every example:
    # total NLL over total tokens, what nll_from_stats reports.
    scored = answer_nll(model, encoded, batch_size=4, pad_id=tokenizer.pad_token_id)
    width = max(len(e["input_ids"]) for e in encoded)
    pad = lambda seq, value: seq + [value] * (width - len(seq))  # noqa: E731
    with torch.inference_mode():
        loss = model(input_ids=torch.tensor([pad(e["input_ids"], tokenizer.pad_token_id) for e in encoded]),
                     attention_mask=torch.tensor([pad(e["attention_mask"], 0) for e in encoded]),
                     labels=torch.tensor([pad(e["labels"], IGNORE_INDEX) for e in encoded])).loss
    total, tokens = sum(s["nll"] for s in scored), sum(s["tokens"] for s in scored)
    assert total / tokens == pytest.approx(float(loss), rel=1e-5)


def test_batching_with_padding_changes_nothing(model, tokenizer, encoded):
    one = answer_nll(model, encoded, batch_size=1, pad_id=tokenizer.pad_token_id)
    four = answer_nll(model, encoded, batch_size=4, pad_id=tokenizer.pad_token_id)
    everything = answer_nll(model, encoded, batch_size=len(encoded), pad_id=tokenizer.pad_token_id)
    for a, b, c in zip(one, four, everything):
        assert a["tokens"] == b["tokens"] == c["tokens"]
        assert b["nll"] == pytest.approx(a["nll"], rel=1e-5) and c["nll"] == pytest.approx(a["nll"], rel=1e-5)
    # The examples are not longest first, so the checks against `encoded` above and below would see
    # answers returned in batching order instead of input order.
    assert [s["tokens"] for s in one] != sorted((s["tokens"] for s in one), reverse=True)


def test_the_counted_tokens_are_the_answer_labels(model, tokenizer, chats, encoded):
    scored = answer_nll(model, encoded, batch_size=3, pad_id=tokenizer.pad_token_id)
    for chat, example, s in zip(chats, encoded, scored):
        labels = example["labels"]
        assert labels[0] == IGNORE_INDEX  # the first token is never a label, so nothing is lost to the shift
        answer = [t for t in labels if t != IGNORE_INDEX]
        assert s["tokens"] == len(answer)
        # The answer and its end of turn, as training's labels hold them.
        assert tokenizer.decode(answer) == chat[-1]["content"] + "<|im_end|>\n"


def test_a_chat_the_template_renders_differently_is_refused(tiny_base, chats):
    bad = AutoTokenizer.from_pretrained(tiny_base)
    # A marker that appears only when add_generation_prompt is set: the prompt is no prefix of the chat.
    bad.chat_template = "{% if add_generation_prompt %}{{ '<|endoftext|>' }}{% endif %}" + CHAT_TEMPLATE
    with pytest.raises(ValueError, match="render their prompt differently"):
        examples(bad, chats)


def test_the_refusal_names_the_first_chat_that_renders_differently(monkeypatch, tokenizer, chats):
    real = encode_examples(tokenizer, chats)
    monkeypatch.setattr(likelihood, "encode_examples",
                        lambda tok, cs, kwargs=None: [None if i in (2, 5) else e for i, e in enumerate(real)])
    with pytest.raises(ValueError, match=r"^2 test chats \(the first at line 3\)"):
        examples(tokenizer, chats)
