"""A hybrid-thinking chat template (Qwen3's, tests/fixtures/qwen3_chat_template.jinja) without a
preset: thinking is off by default, so training targets hold no empty think block and answers do
not open one; the default taken is logged and recorded in the run info; model.chat_template_kwargs
overrides it; think blocks are removed before scoring and counted.

Run: python -m pytest tests/test_thinking.py -q
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.workspace import build_workspace, command

from medqa_scale.core.cli import PipelineError
from medqa_scale.evaluate.generation import strip_think
from medqa_scale.model.chat_format import (IGNORE_INDEX, defaults_taken, encode_examples, prompt_ids,
                                           resolve_template_kwargs, to_messages)

QWEN3_TEMPLATE = (Path(__file__).parent / "fixtures/qwen3_chat_template.jinja").read_text(encoding="utf-8")
EMPTY_THINK = "<think>\n\n</think>\n\n"


@pytest.fixture(scope="module")
def qwen3_base(tiny_base, tmp_path_factory) -> Path:
    """The tiny base model with Qwen3's chat template, as a user's own checkpoint without a preset."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("qwen3_base") / "base"
    shutil.copytree(tiny_base, out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    tokenizer.chat_template = QWEN3_TEMPLATE
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tokenizer(qwen3_base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen3_base)


def targets(tokenizer, chats, kwargs=None) -> list[str]:
    return [tokenizer.decode([t for t in e["labels"] if t != IGNORE_INDEX]) for e in encode_examples(tokenizer, chats, kwargs)]


CHATS = [to_messages("头痛怎么办？", "多休息，必要时就医。", "你是一名医学助手。"),
         to_messages("发热怎么办？", "多喝水。", "你是一名医学助手。", history=[("你好", "请讲。")])]


def test_thinking_is_off_by_default_and_the_params_override_it(tokenizer):
    assert defaults_taken(tokenizer) == {"enable_thinking": False}
    assert resolve_template_kwargs(tokenizer) == {"enable_thinking": False}
    # Targets are the answers alone; the generation prompt closes the think block itself.
    assert [t.replace("<|im_end|>\n", "") for t in targets(tokenizer, CHATS)] == ["多休息，必要时就医。", "多喝水。"]
    assert tokenizer.decode(prompt_ids(tokenizer, CHATS[0])).endswith("<|im_start|>assistant\n" + EMPTY_THINK)
    # Set in params, the template's own behaviour: every target opens with an empty think block.
    assert defaults_taken(tokenizer, {"enable_thinking": True}) == {}
    assert all(t.startswith(EMPTY_THINK) for t in targets(tokenizer, CHATS, {"enable_thinking": True}))


def test_a_template_without_thinking_takes_no_default(tiny_base):
    from transformers import AutoTokenizer

    assert defaults_taken(AutoTokenizer.from_pretrained(tiny_base)) == {}


def test_think_blocks_are_removed_before_scoring_and_counted():
    answers, removed = strip_think(["<think>\n\n</think>\n\n多休息。", "<think>先想想</think>多喝水", "<think>", "就医。"])
    assert answers == ["多休息。", "多喝水", "", "就医。"]
    assert removed == {"empty": 1, "whole": 1, "unfinished": 1}


def test_answers_holding_reasoning_need_the_choice_made_in_params(tokenizer):
    from medqa_scale.data.preprocessing import check_reasoning

    records = [{"id": "a:1", "answer": "<think>先想想</think>多休息。"}]
    with pytest.raises(PipelineError, match="1 answers hold <think> blocks .first: a:1.*enable_thinking"):
        check_reasoning(records, tokenizer, {})
    check_reasoning(records, tokenizer, {"enable_thinking": True})


def test_the_generate_stage_answers_without_think_and_records_the_default(qwen3_base, tiny_base, tmp_path):
    ws = build_workspace(tmp_path / "ws", tiny_base)
    shutil.rmtree(ws / "models/base")
    shutil.copytree(qwen3_base, ws / "models/base")
    for run in ("base", "lora-64-42"):
        done = command(ws, "stages.generate", run)
        assert done.returncode == 0, done.stderr[-3000:]
        predictions = [json.loads(line)["prediction"] for line in (ws / f"data/predictions/{run}.jsonl").open(encoding="utf-8")]
        assert predictions and not any("<think>" in p for p in predictions)
        runinfo = json.loads((ws / f"metrics/runinfo/generate-{run}.json").read_text(encoding="utf-8"))
        assert runinfo["chat_template_defaults_taken"] == {"enable_thinking": False}
        assert runinfo["chat_template_kwargs"] == {"enable_thinking": False}
        metrics = json.loads((ws / f"metrics/generate/{run}.json").read_text(encoding="utf-8"))
        assert metrics["think_blocks_removed"] == {"empty": 0, "whole": 0, "unfinished": 0}
    assert "takes enable_thinking and params model.chat_template_kwargs does not set it" in done.stderr
