"""The embedded default's base model: a tiny Qwen2ForCausalLM built and pre-trained offline.

The download_model stage calls `build_and_save` when `model.source` is `builtin`. The result is
saved in the same Hugging Face layout as a downloaded checkpoint, so every later stage loads it
through the same `from_pretrained` path as Qwen2.5.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from types import MethodType

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from medqa_scale.builtin import corpus
from medqa_scale.model.labels import IGNORE_INDEX

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen2's pre-tokenizer, from its tokenizer.json: words, single digits, punctuation runs and
# whitespace split apart before byte-level BPE. With it llama.cpp tokenizes the built-in model
# exactly as transformers does when a GGUF export names the pre-tokenizer `qwen2`.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")

# ChatML, as Qwen2.5-Instruct renders a conversation that carries its own system message.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# Qwen2's byte-level step; its regex is applied by the Split before it. It writes text as one
# symbol per UTF-8 byte, the form the vocabulary and merges are written in.
BYTE_LEVEL = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)


def byte_level(text: str) -> str:
    """`text` as the ByteLevel pre-tokenizer writes it: one symbol per UTF-8 byte."""
    return BYTE_LEVEL.pre_tokenize_str(text)[0][0]


def character_merges(chars: list[str]) -> list[tuple[str, str]]:
    """The byte-level merges that build each of `chars` from its UTF-8 bytes, left to right, so that
    characters beginning with the same bytes share those pieces; in order, without repeats."""
    merges, seen = [], set()
    for ch in chars:
        symbols = byte_level(ch)
        for i in range(1, len(symbols)):
            pair = (symbols[:i], symbols[i])
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
    return merges


def word_merges(texts: list[str], chars: list[str], n_tokens: int) -> list[tuple[str, str]]:
    """Merges of whole characters into words that a character-level BPE learns from `texts`, split
    as Qwen2 splits, until it has `n_tokens` new tokens (a merge whose token it has adds none); in the order
    learned, as character strings. `chars` are the characters of `texts` after NFC."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False)
    trainer = trainers.BpeTrainer(vocab_size=len(chars) + n_tokens, initial_alphabet=chars, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return [tuple(pair) for pair in json.loads(tok.to_str())["model"]["merges"]]


def build_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE built as Qwen2's is (NFC, its split pattern, no unknown tokens) in which
    every character of `texts` (after NFC) is one token; other characters fall back to bytes.

    The vocabulary holds the special tokens, the 256 bytes, every character of `texts` with the
    pieces of its bytes, then words learned from `texts`, up to `vocab_size` tokens in all (fewer
    if `texts` offer no more words); more than `vocab_size` when the characters alone need more.
    """
    nfc = normalizers.NFC()
    chars = sorted({ch for text in texts for ch in nfc.normalize_str(text)})
    # Ranked first, so a character is whole before any merge across characters can apply. None
    # can preempt them: in UTF-8 a lead byte is followed only by its own continuation bytes, and
    # no character's bytes begin another's, so each of these merges stays inside one character.
    merges = character_merges(chars)
    # Merges of whole characters, ranked after: by then each known character is one symbol, so
    # they apply as the character-level BPE learned them (a symbol that spells whole characters
    # starts and ends on character boundaries). Unknown characters' bytes never join a word.
    room = vocab_size - len(SPECIAL_TOKENS) - 256 - len(merges)
    merges += [(byte_level(a), byte_level(b)) for a, b in word_merges(texts, chars, max(room, 0))]
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.add_special_tokens(SPECIAL_TOKENS)
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        BYTE_LEVEL,
    ])
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
        padding_side="right",
    )


def build_model(tokenizer: PreTrainedTokenizerFast, arch: dict, seed: int) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2 model; `arch` holds Qwen2Config fields."""
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        **arch,
    )
    model = Qwen2ForCausalLM(config)
    _redraw_normal_weights(model, config.initializer_range, seed)
    return model


def _redraw_normal_weights(model, std: float, seed: int) -> None:
    """Draw the weights transformers draws from N(0, std) again, from NumPy's generator.

    torch's normal_ on CPU takes another code path per kernel set (AVX-512 against the default),
    so the same seed gave other initial weights on another machine. NumPy's PCG64 gives the same
    numbers on every CPU. The embedding's padding row stays zero, as transformers leaves it.
    """
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2:  # Linear and Embedding weights; biases stay zero, norms one
                param.copy_(torch.from_numpy(rng.normal(0.0, std, size=tuple(param.shape))))
        embedding = model.get_input_embeddings()
        if embedding.padding_idx is not None:
            embedding.weight[embedding.padding_idx].zero_()


def _rms_norm_float64(self, hidden_states):
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


@torch.no_grad()
def _rotary_float64(self, x, position_ids):
    freqs = position_ids[..., None].to(torch.float64) * self.inv_freq.to(torch.float64)
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


def _float64_throughout(model) -> list:
    """Qwen2's RMSNorm and rotary embedding compute in float32 whatever the model's dtype; during
    pre-training these modules compute in the model's float64 instead. Returns the patched modules."""
    patched = []
    for module in model.modules():
        kind = type(module).__name__
        if kind in ("Qwen2RMSNorm", "Qwen2RotaryEmbedding"):
            module.forward = MethodType(_rms_norm_float64 if kind == "Qwen2RMSNorm" else _rotary_float64, module)
            patched.append(module)
    return patched


def pretrain(model, tokenizer, dialogues: list[list[dict]], steps: int, batch_size: int, lr: float, seed: int) -> list[float]:
    """Causal-LM training on chat-rendered `dialogues`, so that LoRA has something to adapt.

    Returns the loss at each step. LoRA on a randomly initialised model barely moves its loss.

    The arithmetic is float64 throughout (RMSNorm, rotary embedding and loss included, which
    transformers computes in float32 whatever the model's dtype) and the weights go back to float32
    at the end, so that the model is the same on every CPU. In float32, another summation order or
    kernel set (one thread, ATEN_CPU_CAPABILITY=default) built another base model from the same seed:
    its own NLL moved by 1e-4, but adapters trained on it moved by up to 0.04 nats, as a change of
    seed does, beyond their intervals. With float64, 18 of the 650,368 weights differ, by one float32
    ulp. Fine-tuning needs no such care: from one base, both kernel sets gave the same adapters' NLL
    to 4 decimals.
    """
    texts = [tokenizer.apply_chat_template(d, tokenize=False) for d in dialogues]
    rng = random.Random(seed)
    torch.manual_seed(seed)
    dtype = next(model.parameters()).dtype
    model.to(torch.float64)
    patched = _float64_throughout(model)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    losses = []
    for _ in tqdm(range(steps), desc="pre-training the built-in model", unit="step"):
        batch = tokenizer(
            rng.sample(texts, batch_size),
            return_tensors="pt", padding=True, truncation=True, max_length=256,
        )
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
        # The loss by hand: transformers' causal-LM loss casts the logits to float32 first.
        logits = model(**batch).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                                 ignore_index=IGNORE_INDEX)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    for module in patched:
        del module.forward  # back to the class's own
    model.to(dtype)
    model.eval()
    log.info("pre-training loss: first %.3f, last %.3f", losses[0], sum(losses[-10:]) / min(10, len(losses)))
    return losses


def build_and_save(builtin: dict, seed: int, out: Path) -> dict:
    """Build, pre-train and save the model that params `model.builtin` describe; its provenance."""
    torch.manual_seed(seed)
    # Medical passages and general knowledge (what the retention benchmark asks), one pool that
    # each step samples from.
    dialogues = (corpus.pretraining_dialogues(builtin["pretrain"]["passages"], seed=seed)
                 + corpus.general_dialogues(builtin["pretrain"].get("general_passages", 0), seed=seed + 1))
    vocabulary_text = [m["content"] for d in dialogues for m in d] + corpus.tokenizer_text()
    tokenizer = build_tokenizer(vocabulary_text, builtin["vocab_size"])
    model = build_model(tokenizer, builtin["arch"], seed=seed)
    pretrain(model, tokenizer, dialogues, steps=builtin["pretrain"]["steps"],
             batch_size=builtin["pretrain"]["batch_size"], lr=builtin["pretrain"]["lr"], seed=seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"source": "builtin", "seed": seed, "parameters": sum(x.numel() for x in model.parameters())}
