"""Records -> chats with token counts, filtered by token length and de-duplicated.

Lengths are counted with the model's own tokenizer and chat template, so the limits mean what
training will see.
"""

from __future__ import annotations

from collections import Counter

from tqdm.auto import tqdm

from medqa_scale.chat import IGNORE_INDEX, encode_example, to_messages


def preprocess_records(records: list[dict], tokenizer, system_prompt: str, max_source_len: int,
                       max_target_len: int) -> tuple[list[dict], Counter]:
    """Kept records with their chats and token counts, and a count of skipped ones by reason."""
    kept, skipped, seen = [], Counter(), set()
    for r in tqdm(records, desc="tokenizing", unit="rec", mininterval=5):
        question, answer = " ".join(r["question"].split()), " ".join(r["answer"].split())
        if not question or not answer:
            skipped["empty"] += 1
            continue
        if (question, answer) in seen:
            skipped["duplicate"] += 1
            continue
        seen.add((question, answer))
        messages = to_messages(question, answer, system_prompt)
        try:
            example = encode_example(tokenizer, messages)
        except ValueError:
            skipped["template_mismatch"] += 1
            continue
        n_answer = sum(1 for label in example["labels"] if label != IGNORE_INDEX)
        n_prompt = len(example["input_ids"]) - n_answer
        if n_prompt > max_source_len:
            skipped["source_too_long"] += 1
        elif n_answer > max_target_len:
            skipped["target_too_long"] += 1
        else:
            kept.append({"id": r["id"], "question": question, "answer": answer, "messages": messages,
                         "n_prompt_tokens": n_prompt, "n_answer_tokens": n_answer})
    return kept, skipped
