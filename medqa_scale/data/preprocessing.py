"""Raw records -> cleaned chats with token counts: text cleaned, lengths checked in characters
and in tokens, exact and near duplicates removed across sources. Every record left out is
listed with its reason and origin (source, file, line) and counted.

Lengths in tokens are counted with the model's own tokenizer and chat template, so the limits
mean what training will see.
"""

from __future__ import annotations

from collections import Counter

from tqdm.auto import tqdm

from medqa_scale.model.chat_format import IGNORE_INDEX, encode_examples, to_messages
from medqa_scale.data.cleaning import clean_text, length_problem, mask_pii
from medqa_scale.data.dedup import deduplicate, left_out

BATCH = 4096  # records tokenized per call of the fast tokenizer


def clean_records(records: list[dict], p: dict) -> tuple[list[dict], list[dict], Counter]:
    """Records with cleaned text (and history, or none when p["history"] is drop), the report
    entries of those left out, and how many personal data items were masked."""
    kept, dropped, masked = [], [], Counter()
    for r in records:
        history = [] if p["history"] == "drop" else [[clean_text(q), clean_text(a)] for q, a in r.get("history", [])]
        question, answer = clean_text(r["question"]), clean_text(r["answer"])
        if p["mask_pii"]:
            (question, n1), (answer, n2) = mask_pii(question), mask_pii(answer)
            masked.update(n1)
            masked.update(n2)
        if not question or not answer:
            dropped.append(left_out(r, "empty"))
        elif reason := length_problem(question, answer, p):
            dropped.append(left_out(r, reason))
        else:
            kept.append({**r, "question": question, "answer": answer, "history": history})
    return kept, dropped, masked


def preprocess_records(records: list[dict], tokenizer, p: dict, seed: int, template_kwargs: dict | None = None
                       ) -> tuple[list[dict], list[dict], Counter]:
    """Kept records with their chats and token counts, the report entries of those left out
    (reason, origin, and for a duplicate the record it repeats), and the personal data masked.
    `p` is params `preprocess`; `template_kwargs`, params model.chat_template_kwargs."""
    cleaned, dropped, masked = clean_records(records, p)
    unique, duplicates = deduplicate(cleaned, _dedup_text, p["near_duplicate_threshold"], p["minhash_perm"], seed)
    dropped += [left_out(r, reason, match) for r, reason, match in duplicates]
    kept = []
    for start in tqdm(range(0, len(unique), BATCH), desc="tokenizing", unit="batch", mininterval=5):
        batch = unique[start:start + BATCH]
        chats = [to_messages(r["question"], r["answer"], p["system_prompt"], history=r["history"]) for r in batch]
        for r, messages, example in zip(batch, chats, encode_examples(tokenizer, chats, template_kwargs)):
            if example is None:
                dropped.append(left_out(r, "template_mismatch"))
                continue
            n_answer = sum(1 for label in example["labels"] if label != IGNORE_INDEX)
            n_prompt = len(example["input_ids"]) - n_answer
            if n_prompt > p["max_source_len"]:
                dropped.append(left_out(r, "source_too_long"))
            elif n_answer > p["max_target_len"]:
                dropped.append(left_out(r, "target_too_long"))
            else:
                kept.append({"id": r["id"], "source": r.get("source"), "origin": r.get("origin"),
                             "question": r["question"], "answer": r["answer"],
                             "messages": messages, "n_prompt_tokens": n_prompt, "n_answer_tokens": n_answer,
                             **{k: r[k] for k in ("group", "department") if k in r}})
    return kept, dropped, masked


def _dedup_text(r: dict) -> str:
    return r["question"] + "\n" + r["answer"]
