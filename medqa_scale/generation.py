"""Greedy, batched answers to chats, and the speed they were produced at."""

from __future__ import annotations

import time

from tqdm.auto import tqdm

from medqa_scale.chat import prompt_ids


def generate_answers(model, tokenizer, chats: list[list[dict]], batch_size: int, max_new_tokens: int):
    """Greedy answers in input order, and the speed they were produced at."""
    import torch
    from transformers import GenerationConfig

    prompts = [prompt_ids(tokenizer, chat) for chat in chats]
    # Longest first: batches of similar length waste less on padding, and OOM shows up at once.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    eos = model.generation_config.eos_token_id or tokenizer.eos_token_id
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                              pad_token_id=tokenizer.pad_token_id)
    stop = set(eos if isinstance(eos, list) else [eos])
    answers, generated = [None] * len(prompts), 0
    start = time.perf_counter()
    for i in tqdm(range(0, len(order), batch_size), desc="generating", unit="batch"):
        idx = order[i:i + batch_size]
        batch = tokenizer.pad({"input_ids": [prompts[j] for j in idx]}, return_tensors="pt").to(model.device)
        with torch.inference_mode():
            out = model.generate(**batch, generation_config=config)
        for j, row in zip(idx, out[:, batch["input_ids"].shape[1]:].tolist()):
            n = next((k for k, t in enumerate(row) if t in stop), len(row))
            generated += n
            answers[j] = tokenizer.decode(row[:n], skip_special_tokens=True).strip()
    elapsed = time.perf_counter() - start
    return answers, {"samples_per_second": len(prompts) / elapsed, "tokens_per_second": generated / elapsed,
                     "generation_seconds": elapsed}

