"""medqa_scale.serve.gguf_write: GGUF files llama.cpp reads back with the tokenizer, chat template and
end-of-turn token; the Ollama Modelfile renders the training chat template; a mismatch or another
architecture is named.

llama-cpp-python is optional: without it the test that runs llama.cpp skips, naming the install
(CI requires it, tests/support/optional.py).

Run: python -m pytest tests/test_gguf_write.py -q
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from support.optional import need_llama_cpp

from medqa_scale.builtin.corpus import generate_pairs
from medqa_scale.core.cli import PipelineError
from medqa_scale.model.chat_format import to_messages
from medqa_scale.serve.gguf_write import modelfile, read_back, write_gguf


def render_go_template(template: str, values: dict) -> str:
    """The Go text/template subset a ChatML Modelfile uses ({{ if .X }}...{{ end }} and {{ .X }}),
    rendered up to {{ .Response }} as Ollama renders a prompt for the model to continue."""
    template = template.split("{{ .Response }}")[0]
    out, stack = [], [True]
    for part in re.split(r"({{.*?}})", template):
        tag = re.fullmatch(r"{{-? *(if )?\.(\w+) *-?}}|{{-? *(end) *-?}}", part)
        if not tag:
            if all(stack):
                out.append(part)
        elif tag.group(3):
            stack.pop()
        elif tag.group(1):
            stack.append(bool(values.get(tag.group(2))))
        elif all(stack):
            out.append(values.get(tag.group(2), ""))
    return "".join(out)


def test_the_modelfile_renders_the_prompt_the_model_was_trained_on(tiny_base):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    text = modelfile("lora-5k-42-q8_0.gguf", "你是一名医学助手。", ["<|im_end|>", "<|endoftext|>"], 128)
    template = re.search(r'TEMPLATE """(.*?)"""', text, re.S).group(1)
    system = re.search(r'SYSTEM """(.*?)"""', text, re.S).group(1)
    for question in ("高血压患者平时要注意什么？", "头痛三天了\n吃什么药？"):
        chat = to_messages(question, None, system)
        expected = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        assert render_go_template(template, {"System": system, "Prompt": question}) == expected
    assert text.startswith("FROM ./lora-5k-42-q8_0.gguf\n")
    for line in ('PARAMETER stop "<|im_end|>"', 'PARAMETER stop "<|endoftext|>"', "PARAMETER temperature 0",
                 "PARAMETER repeat_penalty 1", "PARAMETER num_predict 128"):
        assert line in text.splitlines()


@pytest.mark.slow  # llama.cpp
def test_llama_cpp_tokenizes_the_built_in_tokenizer_as_transformers_does(tiny_base, tmp_path):
    """The built-in tokenizer mirrors Qwen2's pre-tokenizer, so llama.cpp's `qwen2` splits alike."""
    need_llama_cpp()
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    merged = tmp_path / "model"
    shutil.copytree(tiny_base, merged)
    write_gguf(merged, tmp_path / "m.gguf", "f16", "tiny")
    tokenizer = AutoTokenizer.from_pretrained(merged)
    llm = Llama(model_path=str(tmp_path / "m.gguf"), vocab_only=True, verbose=False)
    texts = [tokenizer.apply_chat_template(to_messages(r["question"], None, "你是一名医学助手。"), tokenize=False,
                                           add_generation_prompt=True) for r in generate_pairs(20, seed=5)]
    texts += ["Take 2 tablets, 3 times a day.\n\n血压 140/90 mmHg？  It's fine;  don't worry!", "１２３ＡＢＣ。。。"]
    for text in texts:
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) == \
            tokenizer(text, add_special_tokens=False)["input_ids"], text


def test_read_back_names_what_does_not_match(tiny_base, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_base, other)
    write_gguf(other, tmp_path / "m.gguf", "f16", "tiny")
    assert read_back(tmp_path / "m.gguf", other)["tensors"] == 14
    template = other / "chat_template.jinja"  # where transformers 5 saves it
    template.write_text(template.read_text(encoding="utf-8").replace("<|im_start|>", "<|im_start|> "), encoding="utf-8")
    with pytest.raises(PipelineError, match="tokenizer.chat_template is .* expected"):
        read_back(tmp_path / "m.gguf", other)


def test_a_model_other_than_qwen2_is_refused_with_the_converter_named(tmp_path, tiny_base):
    other = tmp_path / "m"
    shutil.copytree(tiny_base, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "llama"}))
    with pytest.raises(PipelineError, match="give llama.cpp's convert_hf_to_gguf.py with --converter"):
        write_gguf(other, tmp_path / "m.gguf", "f16", "x")
