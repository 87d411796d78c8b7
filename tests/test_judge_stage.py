"""The judge stage (python -m stages.judge) in a workspace of answers, against a scripted local
OpenAI-compatible server: both orders asked for every pair, a rerun that asks nothing, a new seed
that asks only its own pairs, unparseable replies counted, one message for a closed port, the key
kept out of every file and log line, and nothing asked with the judge off. The run against
llama-cpp-python's server, through DVC, is tests/test_judge_llama.py.

Run: python -m pytest tests/test_judge_stage.py -q
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from support.judge_server import prefers_longer, server  # noqa: F401  (the fixture)
from support.local import free_port
from support.workspace import write_params_file

from medqa_scale.core.params import read_yaml

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [f"问题{i}：头痛{i}天了怎么办？" for i in range(5)] + ["难以判断的问题"]
KEY = "sk-" + secrets.token_hex(12)  # made here, so that no file holds it unless the stage wrote it



def write_params(ws: Path, **judge) -> None:
    p = copy.deepcopy(read_yaml(ROOT / "params.yaml"))
    p.update(methods=["lora"])
    p["split"]["scales"], p["train"]["seeds"] = ["250", "1k"], [42]
    p["evaluate"]["bootstrap"]["resamples"] = 500
    p["judge"].update({"enabled": True, "model": "judge-model", **judge})
    write_params_file(ws / "params.yaml", p)


def write_answers(ws: Path, run: str, length: int) -> None:
    """The run's answers: `length` times one phrase (the scripted judge prefers the longer answer)."""
    folder = ws / "data/predictions"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{run}.jsonl", "w", encoding="utf-8") as f:
        for i, q in enumerate(QUESTIONS):
            f.write(json.dumps({"id": f"q{i}", "group": f"g{i // 2}", "question": q, "reference": "多休息。",
                                "prediction": f"{run}:" + "多休息，必要时就医。" * length, "ran_out": False},
                               ensure_ascii=False) + "\n")


@pytest.fixture
def workspace(tmp_path) -> Path:
    for run, length in (("base", 1), ("lora-250-42", 2), ("lora-1k-42", 3)):
        write_answers(tmp_path, run, length)
    return tmp_path


def judge_stage(ws: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.judge"], cwd=ws, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def longer_except_the_hard_question(body):
    """prefers_longer, but the last question gets a reply that is no verdict."""
    return (200, "两个回答都不错，我倾向于A") if "难以判断" in body["messages"][1]["content"] else prefers_longer(body)


def test_both_orders_are_asked_a_rerun_asks_nothing_and_a_new_seed_asks_only_its_pairs(workspace, server):
    s = server(longer_except_the_hard_question)
    write_params(workspace, base_url=s.url)
    proc = judge_stage(workspace)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in (workspace / "data/judge/judgments.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 3 * len(QUESTIONS)  # lora-250 vs base, lora-1k vs base, lora-1k vs lora-250
    asked = [re.search(r"【回答A】\n(.*?):", b["messages"][1]["content"]).group(1) for b in s.bodies]
    for line in lines:  # each pair asked with each answer first
        assert {line["run"], line["against"]} <= set(asked)
        assert line["run_first"]["verdict"] and line["run_second"]["verdict"] if line["id"] != "q5" else \
            line["outcome"] == "unparseable"
    assert {x["outcome"] for x in lines if x["id"] != "q5"} == {"win"}  # the longer answer, in both orders
    m = json.loads((workspace / "metrics/judge.json").read_text(encoding="utf-8"))
    first = len(s.bodies)
    assert first == 2 * 3 * 5 + 2 * 2 * 3  # 30 parseable judgments, and 6 unparseable ones asked twice each
    assert m["usage"]["requests"] == first and m["usage"]["unparseable_replies"] == 6 and m["unparseable"] == 3
    assert m["consistency"] == 1.0 and m["judged_pairs"] == 18
    rates = m["comparisons"]["lora-1k vs base"]
    assert rates["win-rate"] == 100.0 and rates["win_share"] == 1.0 and rates["unparseable"] == 1
    assert rates["win-rate_low"] == 100.0 and rates["win-rate_p"] < 0.05
    assert "stages.judge" not in proc.stdout and "judge: %d requests" not in proc.stderr
    assert re.search(r"judge: \d+ requests", proc.stderr) and "judge requests" in proc.stderr  # the log and the progress bar

    assert judge_stage(workspace).returncode == 0
    assert len(s.bodies) == first  # nothing new: nothing asked
    m = json.loads((workspace / "metrics/judge.json").read_text(encoding="utf-8"))
    assert m["usage"]["requests"] == 0 and m["usage"]["judgments_from_cache"] == m["usage"]["judgments_needed"] == 36

    write_params(workspace, base_url=s.url)
    p = read_yaml(workspace / "params.yaml")
    p["train"]["seeds"] = [42, 43]
    write_params_file(workspace / "params.yaml", p)
    for run, length in (("lora-250-43", 4), ("lora-1k-43", 5)):
        write_answers(workspace, run, length)
    assert judge_stage(workspace).returncode == 0
    new = s.bodies[first:]
    assert len(new) == first  # the new seed's three comparisons, no more
    assert all(re.search(r"-43:", b["messages"][1]["content"]) for b in new)


def test_a_closed_port_stops_the_stage_with_one_message_and_no_judgments(workspace):
    url = f"http://127.0.0.1:{free_port()}/v1"
    write_params(workspace, base_url=url)
    proc = judge_stage(workspace)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"cannot reach the judge at {url}/chat/completions" in errors[0]
    assert "Traceback" not in proc.stderr and not (workspace / "data/judge/judgments.jsonl").exists()
    assert not (workspace / "metrics/judge.json").exists()


def test_the_key_is_sent_and_stays_out_of_every_file_and_log_line(workspace, server):
    s = server(prefers_longer)
    write_params(workspace, base_url=s.url, api_key_env="MEDQA_TEST_JUDGE_KEY")
    missing = judge_stage(workspace)
    assert missing.returncode == 2 and "export MEDQA_TEST_JUDGE_KEY=<your key>" in missing.stderr and not s.bodies
    proc = judge_stage(workspace, {"MEDQA_TEST_JUDGE_KEY": KEY})
    assert proc.returncode == 0, proc.stderr
    assert set(s.auth) == {f"Bearer {KEY}"}
    assert KEY not in proc.stdout + proc.stderr
    for path in workspace.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_params_name_the_variable_not_the_key(workspace):
    write_params(workspace, api_key_env=KEY)
    proc = subprocess.run([sys.executable, "-m", "stages.check_params"], cwd=workspace, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "judge.api_key_env" in proc.stderr


def test_with_the_judge_off_nothing_is_asked(workspace, server):
    s = server(prefers_longer)
    write_params(workspace, base_url=s.url, enabled=False)
    proc = judge_stage(workspace)
    assert proc.returncode == 0, proc.stderr
    assert not s.bodies and (workspace / "data/judge/judgments.jsonl").read_text() == ""
    assert json.loads((workspace / "metrics/judge.json").read_text()) == {"enabled": False}
    assert (workspace / "data/judge_cache.jsonl").exists()
