"""How a question-answer record becomes a chat and a training example. Shared by preprocess,
train, evaluate and the commands that chat with a model, so all use one chat template and one
masking rule."""

from __future__ import annotations

import logging

from medqa_scale.model.labels import IGNORE_INDEX  # noqa: F401  (re-exported: the chat format's mask value)

log = logging.getLogger(__name__)
_told: set[int] = set()  # templates whose default was logged: once per process, not per call


def template_defaults(tokenizer) -> dict:
    """Chat-template arguments this project sets when params model.chat_template_kwargs leaves them
    out. A hybrid-thinking template (Qwen3's: it takes `enable_thinking`) otherwise renders every
    training answer as `<think>\n\n</think>\n\n<answer>` and leaves the generation prompt open,
    so the tuned model learns to open empty think blocks and answers `<think>`: medical QA answers
    hold no reasoning, so thinking is off unless the params turn it on."""
    template = tokenizer.chat_template if isinstance(getattr(tokenizer, "chat_template", None), str) else ""
    return {"enable_thinking": False} if "enable_thinking" in template else {}


def defaults_taken(tokenizer, template_kwargs: dict | None = None) -> dict:
    """The template_defaults that params model.chat_template_kwargs leaves in force (run info)."""
    return {k: v for k, v in template_defaults(tokenizer).items() if k not in (template_kwargs or {})}


def resolve_template_kwargs(tokenizer, template_kwargs: dict | None = None) -> dict:
    """params model.chat_template_kwargs over template_defaults: what every template call uses."""
    defaults, taken = template_defaults(tokenizer), defaults_taken(tokenizer, template_kwargs)
    if taken and id(tokenizer.chat_template) not in _told:
        _told.add(id(tokenizer.chat_template))
        log.info("the chat template takes %s and params model.chat_template_kwargs does not set it: using %s "
                 "(set model.chat_template_kwargs to override)", ", ".join(taken), taken)
    return {**defaults, **(template_kwargs or {})}


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
                                              return_dict=False, **resolve_template_kwargs(tokenizer, template_kwargs)))


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
    kwargs = resolve_template_kwargs(tokenizer, template_kwargs)
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
