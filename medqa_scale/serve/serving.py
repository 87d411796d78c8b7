"""Answering as every run from one loaded base per precision, for the web page.

The base is loaded at most twice, whatever the number of runs: once in full precision for `base`
and the LoRA runs, once 4-bit for `base-4bit` and the QLoRA runs (the base they were trained on).
Every run's adapter is loaded onto its base under the run's name (PEFT's `load_adapter`) and
switched in per answer (`set_adapter`); a reference run answers with the adapters disabled.
Adapters stay unmerged: merging one would change the weights every other run shares.

Answers are greedy and stop where the generate stage's stop (`generation_config`), so a test
question gets the answer the pipeline recorded for it.
"""

from __future__ import annotations

import json
import logging
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from medqa_scale.model.chat_format import prompt_ids
from medqa_scale.evaluate.generation import answer_tokens
from medqa_scale.model.loading import load_base_model

log = logging.getLogger(__name__)


@dataclass
class SharedModels:
    """Each run's model and the adapter to switch in (None: the base with adapters disabled)."""

    tokenizer: object
    models: dict[str, object] = field(default_factory=dict)  # run -> the loaded model of its precision
    adapters: dict[str, str | None] = field(default_factory=dict)  # run -> adapter name, or None
    template_kwargs: dict = field(default_factory=dict)  # params model.chat_template_kwargs
    lock: threading.Lock = field(default_factory=threading.Lock)  # one generation at a time: set_adapter is global


def group_by_base(runs: dict[str, tuple[Path | None, dict | None]]) -> list[tuple[dict | None, list[str]]]:
    """Runs grouped by the base they answer with: (quantization, runs), full precision first.
    `runs` maps a run to (adapter directory or None, BitsAndBytesConfig fields or None)."""
    groups: dict[str, tuple[dict | None, list[str]]] = {}
    for run, (_, quantization) in runs.items():
        key = json.dumps(quantization, sort_keys=True)
        groups.setdefault(key, (quantization, []))[1].append(run)
    return sorted(groups.values(), key=lambda g: g[0] is not None)


def load_shared_models(base: Path, runs: dict[str, tuple[Path | None, dict | None]], *, precision: str,
                       trust_remote_code: bool, template_kwargs: dict | None = None) -> SharedModels:
    """Load each base once and every run's adapter onto it by name."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    shared = SharedModels(AutoTokenizer.from_pretrained(base, padding_side="left"), template_kwargs=template_kwargs or {})
    for quantization, names in group_by_base(runs):
        model = load_base_model(base, quantization=quantization, precision=precision,
                                trust_remote_code=trust_remote_code)
        for run in names:
            adapter = runs[run][0]
            if adapter is None:
                shared.adapters[run] = None
            elif isinstance(model, PeftModel):
                model.load_adapter(adapter, adapter_name=run)
                shared.adapters[run] = run
            else:
                model = PeftModel.from_pretrained(model, adapter, adapter_name=run)
                shared.adapters[run] = run
        model.eval()
        for run in names:
            shared.models[run] = model
        log.info("%s base: %s", "4-bit" if quantization else "full-precision", ", ".join(names))
    return shared


def answer_text(tokenizer, new_tokens: list[int], stop: set[int]) -> tuple[str, bool]:
    """The answer in generated tokens, cut at the first stop token as the generate stage cuts it,
    and whether it ran to max_new_tokens instead."""
    tokens, ran_out = answer_tokens(new_tokens, stop)
    return tokenizer.decode(tokens, skip_special_tokens=True).strip(), ran_out


def stream_answer(shared: SharedModels, run: str, chat: list[dict], config, max_new_tokens: int | None = None):
    """Yield `run`'s answer to `chat` as it grows, under `config` (generation_config, built once
    by the caller; `max_new_tokens` overrides its length); the last value yielded is the whole
    answer, decoded as the generate stage decodes it."""
    import torch
    from transformers import TextIteratorStreamer

    tokenizer, model, adapter = shared.tokenizer, shared.models[run], shared.adapters[run]
    ids = torch.tensor([prompt_ids(tokenizer, chat, shared.template_kwargs)], device=model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    result: dict = {}

    def generate():
        # The worker holds the lock, not the caller: an abandoned stream (a closed browser tab)
        # still ends its generation and frees the models for the next question.
        with shared.lock:
            try:
                with torch.inference_mode(), (model.disable_adapter() if adapter is None and hasattr(model, "disable_adapter")
                                              else nullcontext()):
                    if adapter is not None:
                        model.set_adapter(adapter)
                    result["out"] = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                                   generation_config=config, streamer=streamer,
                                                   max_new_tokens=max_new_tokens or config.max_new_tokens)
            except BaseException as e:  # re-raised in the caller's thread, after the streamer is closed
                result["error"] = e
                streamer.end()

    worker = threading.Thread(target=generate, daemon=True)
    worker.start()
    text = ""
    for piece in streamer:
        text += piece
        yield text.strip()
    worker.join()
    if "error" in result:
        raise result["error"]
    yield answer_text(tokenizer, result["out"][0, ids.shape[1]:].tolist(), set(config.eos_token_id))[0]
