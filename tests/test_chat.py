"""medqa_scale.chat: a run's answers, as the generate stage gives them, to questions from the
arguments or stdin; clear messages for what cannot be answered.

Run: python -m pytest tests/test_chat.py -q
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ruamel.yaml import YAML

from medqa_scale.builtin.corpus import generate_pairs
from medqa_scale.chat_format import to_messages
from medqa_scale.generation import generate_answers
from medqa_scale.modeling import add_trainable_adapter, load_base_model, load_run_model, save_adapter
from medqa_scale.params import read_yaml

ROOT = Path(__file__).resolve().parents[1]


def small_params() -> dict:
    p = copy.deepcopy(read_yaml(ROOT / "params.yaml"))
    p["precision"] = "fp32"
    p["evaluate"].update(batch_size=4, max_new_tokens=6)
    return p


def make_adapter(base: Path, out: Path, p: dict, quantization: dict | None) -> None:
    """An adapter as train leaves one, without training: every lora_B random, so the adapter
    changes the answers (a new adapter's lora_B is zero, which changes nothing)."""
    model = load_base_model(base, quantization=quantization, precision="fp32", trust_remote_code=False)
    model = add_trainable_adapter(model, p["lora"], quantized=quantization is not None, gradient_checkpointing=False)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.2)
    save_adapter(model, out)


def build_workspace(ws: Path, tiny_base: Path) -> Path:
    """models/base, two adapters (lora-64-42, qlora-64-42), test records, params.yaml and
    data/params/ laid out as the pipeline leaves them."""
    p = small_params()
    shutil.copytree(tiny_base, ws / "models/base")
    (ws / "data/params").mkdir(parents=True)
    quantization = {"lora": None, "qlora": p["quantization"]}
    for method, q in quantization.items():
        (ws / f"data/params/quantization-{method}.json").write_text(json.dumps(q), encoding="utf-8")
        make_adapter(ws / "models/base", ws / f"models/adapters/{method}-64-42", p, q)
    records = [{**r, "messages": to_messages(r["question"], r["answer"], p["preprocess"]["system_prompt"])}
               for r in generate_pairs(6, seed=7)]
    (ws / "data/split").mkdir(parents=True)
    (ws / "data/split/test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                              encoding="utf-8")
    with open(ws / "params.yaml", "w", encoding="utf-8") as f:
        YAML(typ="safe", pure=True).dump(p, f)
    return ws


def command(workspace: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", *args], cwd=workspace, env=env, input=stdin, capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_base) -> Path:
    return build_workspace(tmp_path_factory.mktemp("chat"), tiny_base)


@pytest.fixture(scope="module")
def questions() -> list[str]:
    return [r["question"] for r in generate_pairs(3, seed=11)]


def expected_answers(workspace: Path, run: str, questions: list[str], max_new_tokens: int | None = None) -> list[str]:
    """generate_answers on the run's model, loaded as the generate stage loads it."""
    from transformers import AutoTokenizer

    p, base = small_params(), workspace / "models/base"
    quantization = p["quantization"] if run.startswith("qlora") or run == "base-4bit" else None
    adapter = None if run.startswith("base") else workspace / "models/adapters" / run
    model = load_run_model(base, adapter, quantization, precision="fp32", trust_remote_code=False, merge=True)
    tokenizer = AutoTokenizer.from_pretrained(base, padding_side="left")
    chats = [to_messages(q, None, p["preprocess"]["system_prompt"]) for q in questions]
    return generate_answers(model, tokenizer, chats, 4, max_new_tokens or p["evaluate"]["max_new_tokens"],
                            p["evaluate"]["generation"])[0]


def test_chat_answers_the_questions_given_as_arguments_as_the_run_is_evaluated(workspace, questions):
    proc = command(workspace, "medqa_scale.chat", "lora-64-42", *questions)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = expected_answers(workspace, "lora-64-42", questions)
    assert proc.stdout == "".join(a + "\n" for a in expected)  # the answers alone: logs go to stderr
    assert expected != expected_answers(workspace, "base", questions)  # the adapter is in use


def test_chat_reads_one_question_a_line_from_stdin_skipping_blank_lines(workspace, questions, monkeypatch, capsys):
    from medqa_scale import chat

    monkeypatch.chdir(workspace)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{questions[0]}\n\n  \n{questions[1]}\n"))
    chat.main(["qlora-64-42"])
    expected = expected_answers(workspace, "qlora-64-42", questions[:2])
    assert capsys.readouterr().out == "".join(a + "\n" for a in expected) and all(expected)


def test_max_new_tokens_bounds_the_answer(workspace, questions, monkeypatch, capsys):
    from medqa_scale import chat

    monkeypatch.chdir(workspace)
    chat.main(["lora-64-42", "--max-new-tokens", "1", questions[0]])
    short = capsys.readouterr().out.strip()
    # Compared with a one-token answer, not with a prefix of the long one: one byte-level token
    # may end inside a character, which decodes differently on its own.
    assert short == expected_answers(workspace, "lora-64-42", questions[:1], max_new_tokens=1)[0]
    assert short != expected_answers(workspace, "lora-64-42", questions[:1])[0]


@pytest.mark.parametrize("args, message", [
    (["dora-64-42", "问"], "is not a run name like lora-2k-42"),
    (["lora-1k-42", "问"], "run `dvc repro train@lora-1k-42`"),
    (["lora-64-42", "头痛" * 200], "over preprocess.max_source_len (128 tokens)"),
])
def test_chat_stops_with_one_message_for_what_it_cannot_answer(workspace, args, message):
    proc = command(workspace, "medqa_scale.chat", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr and proc.stdout == ""


def test_chat_without_a_base_model_says_how_to_make_it(workspace, tmp_path):
    shutil.copy(workspace / "params.yaml", tmp_path / "params.yaml")
    proc = command(tmp_path, "medqa_scale.chat", "base", "问")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "run `dvc repro download_model`" in proc.stderr
