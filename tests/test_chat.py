"""medqa_scale.apps.chat: a run's answers, as the generate stage gives them, to questions from the
arguments or stdin; clear messages for what cannot be answered.

Run: python -m pytest tests/test_chat.py -q
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import pytest

from medqa_scale.builtin.corpus import generate_pairs

from support.workspace import ROOT, build_workspace, command, expected_answers, small_params  # noqa: F401


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_base) -> Path:
    return build_workspace(tmp_path_factory.mktemp("chat"), tiny_base)


@pytest.fixture(scope="module")
def questions() -> list[str]:
    return [r["question"] for r in generate_pairs(3, seed=11)]


def test_chat_answers_the_questions_given_as_arguments_as_the_run_is_evaluated(workspace, questions):
    proc = command(workspace, "medqa_scale.apps.chat", "lora-64-42", *questions)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = expected_answers(workspace, "lora-64-42", questions)
    assert proc.stdout == "".join(a + "\n" for a in expected)  # the answers alone: logs go to stderr
    assert expected != expected_answers(workspace, "base", questions)  # the adapter is in use


def test_chat_reads_one_question_a_line_from_stdin_skipping_blank_lines(workspace, questions, monkeypatch, capsys):
    from medqa_scale.apps import chat

    monkeypatch.chdir(workspace)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{questions[0]}\n\n  \n{questions[1]}\n"))
    chat.main(["qlora-64-42"])
    expected = expected_answers(workspace, "qlora-64-42", questions[:2])
    assert capsys.readouterr().out == "".join(a + "\n" for a in expected) and all(expected)


def test_max_new_tokens_bounds_the_answer(workspace, questions, monkeypatch, capsys):
    from medqa_scale.apps import chat

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
    proc = command(workspace, "medqa_scale.apps.chat", *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr and proc.stdout == ""


def test_chat_without_a_base_model_says_how_to_make_it(workspace, tmp_path):
    shutil.copy(workspace / "params.yaml", tmp_path / "params.yaml")
    proc = command(tmp_path, "medqa_scale.apps.chat", "base", "问")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "run `dvc repro download_model`" in proc.stderr
