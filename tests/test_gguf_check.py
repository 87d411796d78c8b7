"""medqa_scale.serve.gguf_check, and the GGUF export end to end (python -m medqa_scale.apps.export <run>
--format gguf): llama.cpp's greedy answers from f16 equal transformers' token for token, q8_0's agree
with f16's.

llama-cpp-python is optional: without it these tests skip, naming the install (CI requires it,
tests/support/optional.py).

Run: python -m pytest tests/test_gguf_check.py -q
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.optional import need_llama_cpp
from support.workspace import build_workspace, command

from medqa_scale.builtin.corpus import generate_pairs
from medqa_scale.model.chat_format import prompt_ids, to_messages
from medqa_scale.serve.gguf_check import agreement, f16_reference, greedy_tokens, llama_cpp_answers, logit_gap
from medqa_scale.serve.gguf_write import gguf_name

pytestmark = pytest.mark.slow  # llama.cpp on GGUF exports


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_base) -> Path:
    return build_workspace(tmp_path_factory.mktemp("gguf"), tiny_base)


def test_agreement_is_the_share_identical_and_mean_rouge_l():
    assert agreement(["多喝水。", "按时吃药。"], ["多喝水。", "按时吃药。"]) == {"identical": 1.0, "rouge_l": 100.0}
    partial = agreement(["多喝水，注意休息。", ""], ["多喝水。", ""])
    assert partial["identical"] == 0.5 and 50 < partial["rouge_l"] < 100


@pytest.mark.parametrize("run", ["lora-200-42", "qlora-200-42"])
def test_gguf_export_of_trained_runs_writes_checked_f16_and_q8_0_files_and_modelfiles(repo, first_run, tmp_path, run):
    """Runs of the small DVC run that test_pipeline shares: the pre-trained built-in base, trained adapters."""
    need_llama_cpp()
    out = tmp_path / run
    proc = command(repo, "medqa_scale.apps.export", run, "--format", "gguf", "--out", str(out), "--check", "2")
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
    from support.workspace import small_params
    from transformers import AutoTokenizer

    from medqa_scale.evaluate.generation import generation_config

    out = tmp_path / "lora"
    proc = command(workspace, "medqa_scale.apps.export", "lora-64-42", "--format", "gguf", "--out", str(out), "--check", "0")
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


def test_llama_cpp_loads_gguf_weights_in_plain_cpu_buffers_and_decodes_q8_0(tiny_base, tmp_path):
    """Repacked for AMX (Sapphire Rapids), a q8_0 file segfaults in llama.cpp's decode
    (ggml-org/llama.cpp#20824); load_llama keeps the weights in plain buffers on every CPU."""
    need_llama_cpp()
    import llama_cpp.llama_cpp as lib

    from medqa_scale.serve.gguf_check import load_llama
    from medqa_scale.serve.gguf_write import write_gguf

    default = lib.llama_model_default_params
    model = tmp_path / "model"
    shutil.copytree(tiny_base, model)
    write_gguf(model, tmp_path / "m.gguf", "q8_0", "tiny")
    llm = load_llama(tmp_path / "m.gguf", n_ctx=64)
    assert llm.model_params.use_extra_bufts is False and lib.llama_model_default_params is default
    assert len(llama_cpp_answers(tmp_path / "m.gguf", [[1, 5, 9, 20, 30]], set(), 8)[0]) == 8
