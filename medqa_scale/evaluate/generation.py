"""Greedy, batched answers to chats, and the speed they were produced at.

The decoding settings come from params alone (`evaluate.generation`, GenerationConfig fields):
transformers would otherwise fill unset fields from the model's own generation_config (for
Qwen2.5-Instruct, repetition_penalty 1.05 and sampling), so the model's is replaced for the run.
Answers stop at the token that ends an assistant turn in the chat template.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from medqa_scale.model.chat_format import prompt_ids
from medqa_scale.core.cli import PipelineError

GREEDY = {"do_sample": False, "num_beams": 1, "repetition_penalty": 1.0}
_THINK = re.compile(r"^\s*<think>(.*?)</think>\s*", re.S)


def strip_think(answers: list[str]) -> tuple[list[str], dict]:
    """Answers without a leading think block, and how many of each kind were removed: "empty"
    (`<think>\n\n</think>`), "whole" (reasoning, then `</think>`), "unfinished" (`<think>` never
    closed: the answer is all reasoning, so nothing is left to score). Scores compare the answer
    a reader would see, not the model's scratch work."""
    removed, out = Counter(empty=0, whole=0, unfinished=0), []
    for answer in answers:
        if m := _THINK.match(answer):
            removed["whole" if m.group(1).strip() else "empty"] += 1
            answer = answer[m.end():]
        elif answer.lstrip().startswith("<think>"):
            removed["unfinished"] += 1
            answer = ""
        out.append(answer)
    return out, dict(removed)


def generation_config(tokenizer, settings: dict, max_new_tokens: int):
    """A GenerationConfig of `settings` (GenerationConfig fields over GREEDY) that stops at the
    chat template's end-of-turn token and at the tokenizer's end-of-sequence token."""
    from transformers import GenerationConfig

    stop = [turn_end_id(tokenizer)]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stop:
        stop.append(tokenizer.eos_token_id)
    return GenerationConfig(**{**GREEDY, **settings}, max_new_tokens=max_new_tokens, eos_token_id=stop,
                            pad_token_id=tokenizer.pad_token_id)


def turn_end_id(tokenizer) -> int:
    """The first token the chat template puts after an assistant's answer (<|im_end|> for Qwen)."""
    marker = "\u2063答\u2063"
    chat = [{"role": "user", "content": "问"}, {"role": "assistant", "content": marker}]
    text = tokenizer.apply_chat_template(chat, tokenize=False)
    after = text[text.index(marker) + len(marker):]
    return tokenizer(after, add_special_tokens=False)["input_ids"][0]


def generate_answers(model, tokenizer, chats: list[list[dict]], batch_size: int, config,
                     template_kwargs: dict | None = None):
    """Greedy answers in input order under `config` (generation_config), and the speed they were
    produced at (with how many answers ran to max_new_tokens instead of ending, and under
    "ran_out" which ones, in input order).
    `template_kwargs`: params model.chat_template_kwargs."""
    import torch

    prompts = [prompt_ids(tokenizer, chat, template_kwargs) for chat in chats]
    # Longest first: batches of similar length waste less on padding, and OOM shows up at once.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    model.generation_config = config  # nothing left to inherit
    stop = set(config.eos_token_id)
    answers, ran_out, generated = [None] * len(prompts), [False] * len(prompts), 0
    start = time.perf_counter()
    for i in tqdm(range(0, len(order), batch_size), desc="generating", unit="batch"):
        idx = order[i:i + batch_size]
        batch = tokenizer.pad({"input_ids": [prompts[j] for j in idx]}, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.generate(**batch, generation_config=config)
        for j, row in zip(idx, out[:, batch["input_ids"].shape[1]:].tolist()):
            tokens, ran_out[j] = answer_tokens(row, stop)
            generated += len(tokens)
            answers[j] = tokenizer.decode(tokens, skip_special_tokens=True).strip()
    elapsed = time.perf_counter() - start
    return answers, {"samples_per_second": len(prompts) / elapsed, "tokens_per_second": generated / elapsed,
                     "generation_seconds": elapsed, "ran_to_max_new_tokens": sum(ran_out), "ran_out": ran_out}


def answer_tokens(row: list[int], stop: set[int]) -> tuple[list[int], bool]:
    """A generated row cut at its first stop token (padding after it goes too), and whether it ran
    to max_new_tokens instead of stopping. Every path that answers cuts answers here."""
    n = next((k for k, t in enumerate(row) if t in stop), None)
    return (row if n is None else row[:n]), n is None


def vllm_answers(base: Path, adapter: Path | None, tokenizer, chats: list[list[dict]], config, *, dtype: str, seed: int,
                 template_kwargs: dict | None = None):
    """`generate_answers` through vLLM on a GPU: the full-precision base, with the LoRA adapter
    applied per request (LoRARequest). Greedy (temperature 0), stopping where
    `generation_config` stops; the same prompt ids."""
    try:
        from vllm import LLM, SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest
    except ImportError as e:
        raise PipelineError(f"evaluate.backend is vllm but vLLM cannot be imported ({e}): `pip install vllm` on a "
                            "GPU machine, or set evaluate.backend: transformers") from None
    rank = json.loads((adapter / "adapter_config.json").read_text())["r"] if adapter else None
    llm = LLM(model=str(base), dtype=dtype, seed=seed, enable_lora=adapter is not None,
              **({"max_lora_rank": max(8, rank)} if rank else {}))
    sampling = SamplingParams(temperature=0.0, max_tokens=config.max_new_tokens, repetition_penalty=config.repetition_penalty,
                              stop_token_ids=list(config.eos_token_id), skip_special_tokens=True)
    prompts = [TokensPrompt(prompt_token_ids=prompt_ids(tokenizer, chat, template_kwargs)) for chat in chats]
    lora = LoRARequest("run", 1, str(adapter)) if adapter else None
    start = time.perf_counter()
    outputs = llm.generate(prompts, sampling, lora_request=lora)
    elapsed = time.perf_counter() - start
    answers = [o.outputs[0].text.strip() for o in outputs]
    generated = sum(len(o.outputs[0].token_ids) for o in outputs)
    ran_out = [o.outputs[0].finish_reason == "length" for o in outputs]
    return answers, {"samples_per_second": len(prompts) / elapsed, "tokens_per_second": generated / elapsed,
                     "generation_seconds": elapsed, "ran_to_max_new_tokens": sum(ran_out), "ran_out": ran_out}
