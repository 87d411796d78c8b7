"""The reference answer's negative log-likelihood under a model, teacher-forced: the study's
primary metric. It measures the model, not the decoder: no generation, so no repetition loop or
stopping decision moves it, and it is cheap.

Answer tokens are counted exactly as the training loss counts them: the chat rendered by the
training template, labels on the final answer only (its end-of-turn token included), each token
predicted from the ones before it.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from medqa_scale.model.chat_format import encode_examples
from medqa_scale.model.labels import IGNORE_INDEX


def examples(tokenizer, chats: list[list[dict]], template_kwargs: dict | None = None) -> list[dict]:
    """Each chat's input_ids and answer-only labels, as training encodes them. Raises ValueError
    naming the first chat the template renders differently inside the whole chat."""
    encoded = encode_examples(tokenizer, chats, template_kwargs)
    bad = [i for i, e in enumerate(encoded) if e is None]
    if bad:
        raise ValueError(f"{len(bad)} test chats (the first at line {bad[0] + 1}) render their prompt differently inside "
                         "the whole chat, so their answer tokens cannot be told apart")
    return encoded


def answer_nll(model, encoded: list[dict], batch_size: int, pad_id: int) -> list[dict]:
    """Per example, in input order: {"nll": the summed NLL (nats) of its answer tokens, "tokens":
    how many}. Batched longest first, right-padded; logits in float32."""
    import torch
    import torch.nn.functional as F

    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]["input_ids"]))
    out: list[dict | None] = [None] * len(encoded)
    for start in tqdm(range(0, len(order), batch_size), desc="scoring reference answers", unit="batch"):
        idx = order[start:start + batch_size]
        width = max(len(encoded[i]["input_ids"]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        labels = torch.full((len(idx), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            n = len(encoded[i]["input_ids"])
            ids[row, :n], labels[row, :n], mask[row, :n] = (torch.tensor(encoded[i]["input_ids"]),
                                                            torch.tensor(encoded[i]["labels"]), 1)
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
        target = labels[:, 1:].to(logits.device)
        nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), target.clamp(min=0), reduction="none")
        counted = target != IGNORE_INDEX
        for row, i in enumerate(idx):
            out[i] = {"nll": float(nll[row][counted[row]].sum()), "tokens": int(counted[row].sum())}
    return out
