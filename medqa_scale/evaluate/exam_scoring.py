"""Multiple-choice accuracy by log-likelihood, with no generation: each candidate answer's summed
log-probability after the question, under the run's chat template, and the best one is the choice.

Two scorings (params benchmark.scoring), as lm-evaluation-harness names them:
  letter       the prompt lists the options; a candidate is an option's letter; acc
  option_text  a candidate is an option's text, its log-likelihood divided by its length in
               characters; acc_norm
A multiple-answer item (letter scoring only) has every non-empty set of letters as a candidate,
written in order ("AC"), and is correct only when the best set is the answer (exact set match).

Context and continuation are tokenized as lm-eval's HFLM does (_encode_pair): whitespace at the
end of the context moves to the start of the continuation, the whole text and the context are
tokenized apart, and the continuation's tokens are what the whole has beyond the context's. The
chat template's prompt ends in a newline, so it is the continuation's first character.
"""

from __future__ import annotations

import itertools

from tqdm.auto import tqdm

from medqa_scale.model.chat_format import resolve_template_kwargs, to_messages

SCORINGS = ("letter", "option_text")


def user_text(item: dict, scoring: str) -> str:
    """The question as the user asks it: with its options listed and 答案： when a letter answers it."""
    if scoring == "option_text":
        return item["question"]
    options = "\n".join(f"{letter}. {text}" for letter, text in item["options"].items())
    return f"{item['question']}\n{options}\n答案："


def shot_messages(shots: list[dict], scoring: str) -> list[tuple[str, str]]:
    """Solved items as earlier turns of the chat (k-shot), their answers as the scoring wants them."""
    return [(user_text(s, scoring), "".join(s["answer"]) if scoring == "letter" else s["options"][s["answer"][0]])
            for s in shots]


def candidates(item: dict, scoring: str) -> list[str]:
    """The continuations scored for an item: letters, sets of letters for a multiple-answer item, or texts."""
    if scoring == "option_text":
        return list(item["options"].values())
    letters = list(item["options"])
    if item["answer"] is not None and len(item["answer"]) > 1:
        return ["".join(c) for n in range(1, len(letters) + 1) for c in itertools.combinations(letters, n)]
    return letters


def context_text(tokenizer, item: dict, *, scoring: str, system_prompt: str, shots: list[dict],
                 template_kwargs: dict | None = None) -> str:
    messages = to_messages(user_text(item, scoring), None, system_prompt, shot_messages(shots, scoring))
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                         **resolve_template_kwargs(tokenizer, template_kwargs))


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens), as lm-eval's HFLM._encode_pair makes them."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    return context_ids, whole[len(context_ids):]


def loglikelihoods(model, pairs: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int) -> list[float]:
    """The summed log-probability (nats) of each continuation after its context, in input order.

    Pairs that differ only in their continuation's last token (the letters after one prompt) share
    one forward pass: the sequence is the context and the continuation but its last token, whose
    log-probability is read at the final position. Batched longest first, right-padded, logits in
    float32."""
    import torch

    prefixes: dict[tuple[int, ...], list[int]] = {}
    for k, (context, continuation) in enumerate(pairs):
        prefixes.setdefault(tuple(context + continuation[:-1]), []).append(k)
    seqs = list(prefixes)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    out = [0.0] * len(pairs)
    for start in tqdm(range(0, len(order), batch_size), desc="scoring options", unit="batch"):
        idx = order[start:start + batch_size]
        width = max(len(seqs[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, :len(seqs[i])], mask[row, :len(seqs[i])] = torch.tensor(seqs[i]), 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float().cpu()
        # Every pair's (row, position, token), gathered at once: log p = logit - logsumexp at that position.
        rows, positions, tokens, owners = [], [], [], []
        for row, i in enumerate(idx):
            for k in prefixes[seqs[i]]:
                context, continuation = pairs[k]
                rows += [row] * len(continuation)
                positions += range(len(context) - 1, len(context) + len(continuation) - 1)
                tokens += continuation
                owners += [k] * len(continuation)
        rows_t, positions_t = torch.tensor(rows), torch.tensor(positions)
        picked = logits[rows_t, positions_t, torch.tensor(tokens)] - torch.logsumexp(logits[rows_t, positions_t], dim=-1)
        for k, value in zip(owners, picked.tolist()):
            out[k] += value
    return out


def score_items(model, tokenizer, items: list[dict], *, scoring: str, system_prompt: str, shots: list[dict],
                batch_size: int, template_kwargs: dict | None = None) -> list[dict]:
    """Per item: {"id", "answer", "chosen", "correct", "scores": {candidate: log-likelihood}}; with
    option_text scoring the choice follows the scores divided by the option's length (acc_norm),
    and chosen is the option's letter."""
    pairs, spans = [], []
    for item in items:
        context = context_text(tokenizer, item, scoring=scoring, system_prompt=system_prompt, shots=shots,
                               template_kwargs=template_kwargs)
        options = candidates(item, scoring)
        spans.append((len(pairs), options))
        pairs += [encode_pair(tokenizer, context, option) for option in options]
    scores = loglikelihoods(model, pairs, batch_size, tokenizer.pad_token_id)
    results = []
    for item, (first, options) in zip(items, spans):
        lls = scores[first:first + len(options)]
        if scoring == "option_text":
            ranked = [ll / len(text) for ll, text in zip(lls, options)]
            keys = list(item["options"])
        else:
            ranked, keys = lls, options
        chosen = keys[max(range(len(ranked)), key=ranked.__getitem__)]
        answer = "".join(item["answer"]) if item["answer"] is not None else None
        results.append({"id": item["id"], "answer": answer, "chosen": chosen,
                        "correct": None if answer is None else chosen == answer,
                        "scores": dict(zip(keys, (round(x, 6) for x in lls)))})
    return results


def accuracy_summary(correct: list[bool], resamples: int, seed: int, confidence: float) -> dict:
    """Accuracy (x100) of a run on a set, its item count, and its percentile bootstrap interval:
    the items drawn with replacement `resamples` times from numpy's generator of `seed`, so every
    run of a set draws the same items (paired), in chunks (a set of 10k items needs no 4000 x 10k
    matrix)."""
    import numpy as np

    scores = np.asarray(correct, dtype=float)
    rng = np.random.default_rng(seed)
    draws = np.concatenate([scores[rng.integers(0, len(scores), size=(min(250, resamples - start), len(scores)))].mean(axis=1)
                            for start in range(0, resamples, 250)])
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return {"accuracy": 100 * float(scores.mean()), "n": len(scores),
            "interval": {"confidence": confidence, "resamples": resamples, "accuracy": {"low": 100 * float(low), "high": 100 * float(high)}}}
