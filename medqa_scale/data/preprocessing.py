"""Raw records -> cleaned chats with token counts: text cleaned, lengths checked in characters
and in tokens, exact and near duplicates removed across sources. Every record left out is
listed with its reason and origin (source, file, line) and counted; what cleaning removed
(control characters) and the earlier turns cut from long dialogues are counted too.

Lengths in tokens are counted with the model's own tokenizer and chat template, so the limits
mean what training will see.
"""

from __future__ import annotations

from collections import Counter

from tqdm.auto import tqdm

from medqa_scale.core.cli import PipelineError
from medqa_scale.model.chat_format import IGNORE_INDEX, defaults_taken, encode_examples, to_messages
from medqa_scale.data.cleaning import clean_text_counted, length_problem, mask_pii
from medqa_scale.data.dedup import deduplicate, left_out

BATCH = 4096  # records tokenized per call of the fast tokenizer


def clean_records(records: list[dict], p: dict) -> tuple[list[dict], list[dict], Counter, Counter]:
    """Records with cleaned text (and history, or none when p["history"] is drop), the report
    entries of those left out, how many personal data items were masked, and what cleaning
    changed: {"control_characters": removed, "records_with_control_characters": records}."""
    kept, dropped, masked, changed = [], [], Counter(), Counter()
    for r in records:
        turns = [] if p["history"] == "drop" else r.get("history", [])
        cleaned = [clean_text_counted(t) for t in (r["question"], r["answer"], *(t for turn in turns for t in turn))]
        if control := sum(n for _, n in cleaned):
            changed.update(control_characters=control, records_with_control_characters=1)
        (question, _), (answer, _), *rest = cleaned
        history = [[rest[i][0], rest[i + 1][0]] for i in range(0, len(rest), 2)]
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
    return kept, dropped, masked, changed


def preprocess_records(records: list[dict], tokenizer, p: dict, seed: int, template_kwargs: dict | None = None
                       ) -> tuple[list[dict], list[dict], Counter, Counter]:
    """Kept records with their chats and token counts, the report entries of those left out
    (reason, origin, and for a duplicate the record it repeats), the personal data masked, and
    what was changed (clean_records' counts, plus "history_truncated": dialogues whose oldest
    turns were cut to fit max_source_len, "history_turns_cut": those turns).
    `p` is params `preprocess`; `template_kwargs`, params model.chat_template_kwargs."""
    check_reasoning(records, tokenizer, template_kwargs)
    cleaned, dropped, masked, changed = clean_records(records, p)
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
            n_prompt, n_answer = lengths(example)
            if n_prompt > p["max_source_len"] and r["history"]:
                r, messages, example, cut = fit_history(tokenizer, r, p, template_kwargs)
                if cut:
                    changed.update(history_truncated=1, history_turns_cut=cut)
                    n_prompt, n_answer = lengths(example)
            if n_prompt > p["max_source_len"]:
                dropped.append(left_out(r, "source_too_long"))
            elif n_answer > p["max_target_len"]:
                dropped.append(left_out(r, "target_too_long"))
            else:
                kept.append({"id": r["id"], "source": r.get("source"), "origin": r.get("origin"),
                             "question": r["question"], "answer": r["answer"],
                             "messages": messages, "n_prompt_tokens": n_prompt, "n_answer_tokens": n_answer,
                             **{k: r[k] for k in ("group", "department") if k in r}})
    return kept, dropped, masked, changed


def check_reasoning(records: list[dict], tokenizer, template_kwargs: dict | None) -> None:
    """Thinking is off by default for a hybrid-thinking template (chat_format.template_defaults),
    because medical QA answers hold no reasoning. Answers that do hold think blocks need the
    choice made in params, not taken for the user."""
    taken = defaults_taken(tokenizer, template_kwargs)
    if "enable_thinking" in taken:
        thinking = [r["id"] for r in records if "<think>" in r["answer"]]
        if thinking:
            raise PipelineError(f"{len(thinking)} answers hold <think> blocks (first: {thinking[0]}) and the chat template "
                                "takes enable_thinking, which is off by default; set model.chat_template_kwargs."
                                "enable_thinking to true to train on the reasoning, or false to keep it off")


def fit_history(tokenizer, r: dict, p: dict, template_kwargs: dict | None = None):
    """(record, messages, example, turns cut): a dialogue whose prompt is over max_source_len keeps
    its most recent earlier turns that fit, whole turns only, oldest dropped first; the last
    question and answer always stay. When even the last question alone does not fit, nothing is
    cut here (turns cut 0) and the caller leaves the record out as source_too_long. A binary search
    over how many turns to keep: the prompt only grows with each turn kept."""
    history = r["history"]

    def encoded(keep: int):
        messages = to_messages(r["question"], r["answer"], p["system_prompt"], history=history[len(history) - keep:])
        return messages, encode_examples(tokenizer, [messages], template_kwargs)[0]

    def fits(example) -> bool:
        return example is not None and lengths(example)[0] <= p["max_source_len"]

    if not fits(encoded(0)[1]):
        return r, *encoded(len(history)), 0
    low, high = 0, len(history) - 1  # the most turns that fit lies in [low, high]
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(encoded(mid)[1]) else (low, mid - 1)
    messages, example = encoded(low)
    return {**r, "history": history[len(history) - low:]}, messages, example, len(history) - low


def lengths(example: dict) -> tuple[int, int]:
    """(prompt tokens, answer tokens) of an encoded example: the answer is what its labels keep."""
    n_answer = sum(1 for label in example["labels"] if label != IGNORE_INDEX)
    return len(example["input_ids"]) - n_answer, n_answer


def _dedup_text(r: dict) -> str:
    return r["question"] + "\n" + r["answer"]
