"""GGUF export (python -m medqa_scale.export <run> --format gguf): files llama.cpp reads back with
the tokenizer, chat template and end-of-turn token; llama.cpp's greedy answers from f16 equal
transformers' token for token; the Ollama Modelfile renders the training chat template.

llama-cpp-python is an optional requirement (README): `.ci/run` installs it, and the tests that run
llama.cpp say how to install it when it is missing.

Run: python -m pytest tests/test_gguf_export.py -q
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from test_chat import build_workspace, command

from medqa_scale.builtin.corpus import generate_pairs
from medqa_scale.chat_format import prompt_ids, to_messages
from medqa_scale.cli import PipelineError
from medqa_scale.gguf_export import (agreement, f16_reference, gguf_name, greedy_tokens, llama_cpp_answers, logit_gap,
                                     modelfile, read_back, write_gguf)

LLAMA_CPP = "llama-cpp-python is not installed: pip install llama-cpp-python==0.3.36 (README, GGUF export)"


def need_llama_cpp():
    from medqa_scale.gguf_export import llama_cpp_installed

    if not llama_cpp_installed():
        pytest.fail(LLAMA_CPP)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_base) -> Path:
    return build_workspace(tmp_path_factory.mktemp("gguf"), tiny_base)


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


def test_agreement_is_the_share_identical_and_mean_rouge_l():
    assert agreement(["多喝水。", "按时吃药。"], ["多喝水。", "按时吃药。"]) == {"identical": 1.0, "rouge_l": 100.0}
    partial = agreement(["多喝水，注意休息。", ""], ["多喝水。", ""])
    assert partial["identical"] == 0.5 and 50 < partial["rouge_l"] < 100


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


@pytest.mark.parametrize("run", ["lora-200-42", "qlora-200-42"])
def test_gguf_export_of_trained_runs_writes_checked_f16_and_q8_0_files_and_modelfiles(repo, first_run, tmp_path, run):
    """Runs of the small DVC run that test_pipeline shares: the pre-trained built-in base, trained adapters."""
    need_llama_cpp()
    out = tmp_path / run
    proc = command(repo, "medqa_scale.export", run, "--format", "gguf", "--out", str(out), "--check", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((out / "export.json").read_text(encoding="utf-8"))["gguf"]
    for outtype in ("f16", "q8_0"):
        assert (out / gguf_name(run, outtype)).stat().st_size == record["files"][outtype]["bytes"]
        assert f"FROM ./{gguf_name(run, outtype)}" in (out / f"Modelfile-{outtype}").read_text(encoding="utf-8")
        assert record["files"][outtype]["read_back"]["tensors"] == 2 + 12 * 2  # embedding, final norm; 12 a layer
    check = record["check"]
    assert check["prompts"] == 5 and check["tokenizer"]
    results = [c["result"] for c in check["f16_against_transformers"]]
    assert set(results) <= {"identical", "tie"} and results.count("identical") >= 4, check
    assert check["q8_0_against_f16"]["rouge_l"] >= check["min_q8_0_rouge_l"]


def test_f16_answers_are_transformers_answers_token_for_token(workspace, tmp_path):
    """Independently of the export's own check: llama.cpp on the f16 file, 5 test prompts."""
    need_llama_cpp()
    from test_chat import small_params
    from transformers import AutoTokenizer

    from medqa_scale.generation import generation_config

    out = tmp_path / "lora"
    proc = command(workspace, "medqa_scale.export", "lora-64-42", "--format", "gguf", "--out", str(out), "--check", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    tokenizer = AutoTokenizer.from_pretrained(out)
    p = small_params()
    config = generation_config(tokenizer, p["evaluate"]["generation"], 24)
    prompts = [prompt_ids(tokenizer, to_messages(r["question"], None, p["preprocess"]["system_prompt"]))
               for r in generate_pairs(5, seed=3)]
    reference = f16_reference(out, trust_remote_code=False)
    expected = greedy_tokens(reference, prompts, config)
    got = llama_cpp_answers(out / gguf_name("lora-64-42", "f16"), prompts, set(config.eos_token_id), 24)
    assert all(expected)
    identical = sum(a == b for a, b in zip(expected, got))
    assert identical >= 4, (expected, got)
    for prompt, a, b in zip(prompts, expected, got):
        if a != b:  # only where transformers itself cannot tell the two tokens apart
            k = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
            assert logit_gap(reference, prompt + a[:k], a[k], b[k]) < 0.01


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
