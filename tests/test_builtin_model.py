"""Tests for medqa_scale/builtin/model.py: the embedded default's tiny Qwen2 base model."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

from support.hub_standin import TINY_ARCH, read_tree
from medqa_scale.core import hub
from medqa_scale.builtin import corpus
from medqa_scale.builtin import model as builtin_model


def sha256_tree(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in read_tree(root).items()}


def tiny_texts(seed: int = 0) -> list[str]:
    return [r["question"] + r["answer"] for r in corpus.generate_pairs(200, seed=seed)]


def tiny_tokenizer(seed: int = 0):
    return builtin_model.build_tokenizer(tiny_texts(seed), 400)


def ids_of(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


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



ANOTHER_MACHINE = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default"}


def float32_steps_apart(a: Path, b: Path) -> int:
    """The largest distance, in float32 steps (ulps), between the same weight of two saved models."""
    import torch
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max(int((wa[k].view(torch.int32).long() - wb[k].view(torch.int32).long()).abs().max()) for k in wa)


def test_the_base_model_is_the_same_under_another_summation_order_and_kernel_set(tmp_path):
    """One thread and PyTorch's default kernels stand in for another machine. In float32 they built
    another base model (weights many float32 steps apart, and every adapter trained on it moved as
    much as a change of seed does); the float64 pre-training leaves at most a final rounding apart."""
    builtin = {"vocab_size": 400, "arch": TINY_ARCH, "pretrain": {"passages": 200, "steps": 20, "batch_size": 8, "lr": 0.003}}
    script = ("import json, sys; from pathlib import Path; from medqa_scale.builtin.model import build_and_save; "
              "build_and_save(json.loads(sys.argv[1]), seed=3, out=Path(sys.argv[2]))")
    for name, extra in (("here", {}), ("other", ANOTHER_MACHINE)):
        env = {k: v for k, v in os.environ.items() if k not in ANOTHER_MACHINE} | extra
        subprocess.run([sys.executable, "-c", script, json.dumps(builtin), str(tmp_path / name)], env=env, check=True,
                       cwd=Path(__file__).resolve().parents[1], capture_output=True)
    assert float32_steps_apart(tmp_path / "here", tmp_path / "other") <= 1


def test_build_tokenizer_uses_qwen_special_tokens():
    tok = tiny_tokenizer()
    # Qwen2.5-Instruct ends a turn with <|im_end|> and pads with <|endoftext|>; later stages rely on both.
    assert tok.eos_token == "<|im_end|>"
    assert tok.pad_token == "<|endoftext|>"
    assert tok.eos_token_id != tok.pad_token_id
    assert tok.convert_tokens_to_ids(builtin_model.SPECIAL_TOKENS) == [0, 1, 2]
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


def test_every_character_of_the_texts_is_one_token():
    """Whole characters, so the model cannot emit half a character (U+FFFD in its answers)."""
    texts = tiny_texts()
    tok = builtin_model.build_tokenizer(texts, 1500)
    chars = sorted(set("".join(texts)))
    assert len(chars) > 500 and any(len(ch.encode()) == 3 for ch in chars)
    for ch in chars:
        ids = ids_of(tok, ch)
        assert len(ids) == 1 and tok.decode(ids) == ch, ch
    # In running text too: every token spells whole characters (one or a learned word of them).
    for text in texts[:50]:
        ids = ids_of(tok, text)
        assert all("\ufffd" not in tok.decode([i]) for i in ids), text
        assert tok.decode(ids) == text
    assert sum(len(ids_of(tok, t)) for t in texts) < sum(len(t) for t in texts)  # some words learned


def test_a_character_outside_the_texts_falls_back_to_bytes():
    tok = tiny_tokenizer()
    for ch in ("😀", "龘", "é"):
        assert ch not in "".join(tiny_texts())
        ids = ids_of(tok, ch)
        assert len(ids) > 1 and all("\ufffd" in tok.decode([i]) for i in ids), ch
        assert tok.decode(ids) == ch
    text = "患者龘发热😀三天"
    assert tok.decode(ids_of(tok, text)) == text


def test_only_bytes_and_pieces_of_characters_decode_to_replacement_characters():
    """No merge joins bytes across characters: the tokens that are not whole characters are the
    non-ASCII bytes and the leading bytes of the texts' characters; whole ones decode cleanly in any order."""
    from tokenizers import pre_tokenizers

    texts = tiny_texts()
    tok = builtin_model.build_tokenizer(texts, 1500)
    ascii_bytes = {builtin_model.byte_level(chr(b)) for b in range(128)}
    pieces = {s[:i] for s in map(builtin_model.byte_level, set("".join(texts))) for i in range(1, len(s))}
    expected = pieces | (set(pre_tokenizers.ByteLevel.alphabet()) - ascii_bytes)
    partial = [i for i in range(len(tok)) if "\ufffd" in tok.decode([i])]
    assert set(tok.convert_ids_to_tokens(partial)) == expected
    whole = [i for i in range(len(tok)) if i not in set(partial) | set(tok.all_special_ids)]
    rng = random.Random(0)
    for _ in range(200):
        ids = rng.choices(whole, k=20)
        decoded = tok.decode(ids)
        assert "\ufffd" not in decoded and decoded == "".join(tok.decode([i]) for i in ids)


def test_characters_are_assembled_before_any_word_is_merged():
    """BPE applies merges by rank: a character's bytes join before any merge across characters can."""
    texts = tiny_texts()
    tok = builtin_model.build_tokenizer(texts, 1500)
    merges = [tuple(m) for m in json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]]
    assembly = builtin_model.character_merges(sorted(set("".join(texts))))
    assert merges[:len(assembly)] == assembly and len(merges) > len(assembly)
    decode = tok.backend_tokenizer.decoder.decode
    assert all("\ufffd" not in decode([a]) + decode([b]) for a, b in merges[len(assembly):])


def test_vocab_size_is_the_total_unless_the_characters_need_more():
    texts = tiny_texts()
    n_chars = len(set("".join(texts)))
    assert len(builtin_model.build_tokenizer(texts, 1500)) == 1500
    # The characters need more than 400: the specials, 256 bytes, each character and its pieces.
    needed = len(builtin_model.build_tokenizer(texts, 400))
    assert needed == 3 + 256 + len(builtin_model.character_merges(sorted(set("".join(texts))))) > 400
    assert needed > 3 + 256 + n_chars - 2  # a few ASCII characters are bytes already


def test_the_tokenizer_is_deterministic_across_processes():
    """Same texts, byte-identical tokenizer.json: in this process and in another with other hash seeds."""
    texts = tiny_texts()
    first = builtin_model.build_tokenizer(texts, 1500).backend_tokenizer.to_str()
    assert builtin_model.build_tokenizer(texts, 1500).backend_tokenizer.to_str() == first
    code = ("import sys; from medqa_scale.builtin import corpus, model; "
            "texts = [r['question'] + r['answer'] for r in corpus.generate_pairs(200, seed=0)]; "
            "sys.stdout.write(model.build_tokenizer(texts, 1500).backend_tokenizer.to_str())")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONHASHSEED": "12345", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(root)}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root, check=True)
    assert other.stdout == first
