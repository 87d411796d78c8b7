"""Tests for medqa_scale/builtin/model.py: the embedded default's tiny Qwen2 base model."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from support.hub_standin import TINY_ARCH, read_tree
from medqa_scale.core import hub
from medqa_scale.builtin import corpus
from medqa_scale.builtin import model as builtin_model


def sha256_tree(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in read_tree(root).items()}


def tiny_tokenizer(seed: int = 0):
    return builtin_model.build_tokenizer([r["question"] + r["answer"] for r in corpus.generate_pairs(200, seed=seed)], 400)


def test_build_and_save_is_byte_identical_across_runs(tmp_path):
    """The same params and seed give the same files, so DVC sees no change and later stages do not rerun."""
    builtin = {
        "vocab_size": 400,
        "arch": TINY_ARCH,
        "pretrain": {"passages": 50, "steps": 3, "batch_size": 4, "lr": 0.003},
    }
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    prov_a = builtin_model.build_and_save(builtin, seed=7, out=a)
    prov_b = builtin_model.build_and_save(builtin, seed=7, out=b)

    assert prov_a == prov_b
    assert prov_a["source"] == "builtin" and prov_a["seed"] == 7 and prov_a["parameters"] > 0
    hashes_a, hashes_b = sha256_tree(a), sha256_tree(b)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(hashes_a)
    assert hashes_a == hashes_b
    hub.check_layout(a)


def test_build_tokenizer_uses_qwen_special_tokens():
    tok = tiny_tokenizer()
    # Qwen2.5-Instruct ends a turn with <|im_end|> and pads with <|endoftext|>; later stages rely on both.
    assert tok.eos_token == "<|im_end|>"
    assert tok.pad_token == "<|endoftext|>"
    assert tok.eos_token_id != tok.pad_token_id
    assert len(tok) == 400
    # Byte-level BPE: any text round-trips, with no unknown token.
    text = "患者发热三天，咳嗽。 x=1"
    assert tok.decode(tok(text)["input_ids"]) == text
    rendered = tok.apply_chat_template([{"role": "user", "content": "你好"}], tokenize=False, add_generation_prompt=True)
    assert rendered == "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n"


def test_build_model_has_requested_arch():
    tok = tiny_tokenizer()
    model = builtin_model.build_model(tok, TINY_ARCH, seed=0)
    config = model.config
    assert type(model).__name__ == "Qwen2ForCausalLM"
    for field, value in TINY_ARCH.items():
        assert getattr(config, field) == value, field
    assert len(model.model.layers) == TINY_ARCH["num_hidden_layers"]
    assert config.vocab_size == len(tok)
    assert (config.eos_token_id, config.pad_token_id) == (tok.eos_token_id, tok.pad_token_id)
    assert model.get_input_embeddings().weight.shape == (len(tok), TINY_ARCH["hidden_size"])


def test_pretrain_lowers_the_loss():
    # A few steps at a high learning rate, so it runs in seconds: with this seed the loss falls
    # from about 6.0 to about 5.0 in 8 steps (seeds 0 and 1 behave alike), far more than the
    # margin asserted here.
    seed = 7
    dialogues = corpus.pretraining_dialogues(40, seed=seed)
    tok = tiny_tokenizer(seed)
    model = builtin_model.build_model(tok, TINY_ARCH, seed=seed)

    losses = builtin_model.pretrain(model, tok, dialogues, steps=8, batch_size=4, lr=0.01, seed=seed)

    assert len(losses) == 8
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < losses[0]
    assert not model.training  # left in eval mode for saving and evaluation


def test_the_tokenizer_splits_text_as_qwen2_does_before_bpe():
    """Qwen2's own split pattern (its tokenizer.json), which llama.cpp applies for pre-tokenizer
    `qwen2`: digits one by one, words with one leading non-letter, punctuation runs, whitespace."""
    import regex

    tok = builtin_model.build_tokenizer(["多喝水 drink water 123"], vocab_size=300)
    text = "It's 2 tablets,  3 times a day.\n\n血压140/90 mmHg？ don't"
    pieces = [p for p, _ in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)]
    expected = regex.findall(builtin_model.QWEN2_SPLIT, text)
    assert [tok.backend_tokenizer.decoder.decode([p]) for p in pieces] == expected
    assert expected[:4] == ["It", "'s", " ", "2"] and "1" in expected and "140" not in expected
