"""How a question-answer record becomes a chat and a training example. Shared by preprocess,
train, evaluate and the commands that chat with a model, so all use one chat template and one
masking rule."""

from __future__ import annotations

from medqa_scale.model.labels import IGNORE_INDEX  # noqa: F401  (re-exported: the chat format's mask value)


def to_messages(question: str, answer: str | None, system_prompt: str, history=()) -> list[dict]:
    """The chat for one record: the system prompt, the earlier (question, answer) turns of
    `history`, then the question; without `answer`, the prompt that generation continues."""
    messages = [{"role": "system", "content": system_prompt}]
    for q, a in history:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": question})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def _prompt(messages: list[dict]) -> list[dict]:
    """Everything before the final answer (history included)."""
    return messages[:-1] if messages[-1]["role"] == "assistant" else messages


def prompt_ids(tokenizer, messages: list[dict], template_kwargs: dict | None = None) -> list[int]:
    """Token ids of everything before the final answer (history included), ending in the
    assistant header. `template_kwargs` (params model.chat_template_kwargs) go to the chat
    template, e.g. Qwen3's enable_thinking."""
    return list(tokenizer.apply_chat_template(_prompt(messages), add_generation_prompt=True, tokenize=True,
                                              return_dict=False, **(template_kwargs or {})))


def encode_example(tokenizer, messages: list[dict], template_kwargs: dict | None = None) -> dict:
    """input_ids for the whole chat, with labels masked on the prompt so loss is on the final
    answer only (the history's answers are context, not targets).

    Raises ValueError when the template does not render the prompt as a prefix of the whole chat
    (then masking by length would be wrong).
    """
    [example] = encode_examples(tokenizer, [messages], template_kwargs)
    if example is None:
        raise ValueError("chat template renders the prompt differently inside the full chat")
    return example


def encode_examples(tokenizer, chats: list[list[dict]], template_kwargs: dict | None = None) -> list[dict | None]:
    """`encode_example` for many chats at once, None where it would raise: the templates are
    rendered one by one, the token ids come from one batched call of the fast tokenizer, which
    is what makes preprocess of 100k+ records take seconds, not minutes."""
    kwargs = template_kwargs or {}
    prompts = [tokenizer.apply_chat_template(_prompt(c), add_generation_prompt=True, tokenize=False, **kwargs)
               for c in chats]
    fulls = [tokenizer.apply_chat_template(c, tokenize=False, **kwargs) for c in chats]
    ids = tokenizer(prompts + fulls, add_special_tokens=False)["input_ids"]
    examples = []
    for prompt, full in zip(ids[:len(chats)], ids[len(chats):]):
        if full[: len(prompt)] != prompt:
            examples.append(None)
        else:
            examples.append({"input_ids": full, "attention_mask": [1] * len(full),
                             "labels": [IGNORE_INDEX] * len(prompt) + full[len(prompt):]})
    return examples
