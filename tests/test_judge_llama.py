"""The judge stage end to end, through DVC, against a server we did not write: llama-cpp-python's
OpenAI-compatible server (`python -m llama_cpp.server`) on a free localhost port, serving a GGUF
export of a run of the shared small pipeline. The judge stage writes judgments in both orders,
rates with intervals and the consistency; a second `dvc repro` makes no request (counted in the
server's access log); adding runs asks only their pairs; the summary and report carry the win
rates; the API key is in no file, DVC output, cache entry or log line.

Run: python -m pytest tests/test_judge_llama.py -q     (slow: the shared DVC run, then about a minute)
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from support.dvc_repo import RUNS, back_to_first_run, dvc, ran_stages
from support.local import free_port
from support.optional import need_llama_cpp_server
from support.workspace import command, write_params_file

from medqa_scale.core.params import read_yaml
from medqa_scale.serve.gguf_write import gguf_name

pytestmark = pytest.mark.slow
KEY = "sk-" + secrets.token_hex(12)  # made here, so that no file holds it unless the pipeline wrote it
CHAT = '"POST /v1/chat/completions HTTP/1.1"'



def set_params(repo: Path, **changes) -> None:
    p = read_yaml(repo / "params.yaml")
    for dotted, value in changes.items():
        node, *path, leaf = [p, *dotted.split("__")]
        for part in path:
            node = node[part]
        node[leaf] = value
    write_params_file(repo / "params.yaml", p)


@pytest.fixture
def llama_server(repo, first_run, tmp_path):
    """llama-cpp-python's server on a free port, serving the f16 GGUF export of the first run's
    lora-400-42 and requiring the key KEY; yields its URL and a count of the chat requests it has logged."""
    need_llama_cpp_server()
    back_to_first_run(repo, first_run)
    out = tmp_path / "export"
    proc = command(repo, "medqa_scale.apps.export", RUNS[1], "--format", "gguf", "--out", str(out), "--check", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    port, log = free_port(), tmp_path / "server.log"
    with open(log, "w") as sink:
        server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(out / gguf_name(RUNS[1], "f16")),
                                   "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--api_key", KEY],
                                  stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(120):
            try:
                request = urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"})
                urllib.request.urlopen(request, timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, log.read_text()[-3000:]
                time.sleep(0.5)
        yield url, lambda: log.read_text(errors="replace").count(CHAT)
    finally:
        server.terminate()
        server.wait(30)
        back_to_first_run(repo, first_run)


def test_the_judge_stage_against_llama_cpp_server(repo, llama_server, monkeypatch):
    url, requests = llama_server
    monkeypatch.setenv("MEDQA_JUDGE_TEST_KEY", KEY)
    set_params(repo, judge__enabled=True, judge__base_url=url, judge__model=RUNS[1], judge__api_key_env="MEDQA_JUDGE_TEST_KEY",
               methods=["lora"])
    first = dvc(repo, "repro", "judge")
    assert ran_stages(first.stdout) == {"check_params", "judge"}
    lora = json.loads((repo / "metrics/judge.json").read_text(encoding="utf-8"))
    asked = requests()
    assert asked > 0 and lora["usage"]["requests"] == asked  # every request the stage made reached the server
    assert set(lora["comparisons"]) == {"lora-200 vs base", "lora-400 vs base", "lora-400 vs lora-200"}
    lines = [json.loads(x) for x in (repo / "data/judge/judgments.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 3 * 40
    cache = [json.loads(x) for x in (repo / "data/judge_cache.jsonl").read_text(encoding="utf-8").splitlines()]
    differing = [x for x in lines if not x["identical"]]
    assert differing and len(cache) == lora["usage"]["judgments_needed"] == lora["usage"]["judgments_asked"]
    for x in differing:  # both orders asked: each side has the server's verdict (or is counted unparseable)
        assert set(x["run_first"]) == set(x["run_second"]) == {"verdict", "reason"}
    assert lora["consistency"] is not None and 0 <= lora["consistency"] <= 1
    for rates in lora["comparisons"].values():
        if rates["judged_pairs"] > rates["unparseable"]:
            assert rates["win-rate_low"] <= rates["win-rate"] <= rates["win-rate_high"]
            assert abs(rates["win_share"] + rates["tie_share"] + rates["loss_share"] - 1) < 1e-9

    # Back to both methods: only the QLoRA runs' pairs are asked; the summary takes the judge in.
    set_params(repo, methods=["lora", "qlora"])
    both = dvc(repo, "repro")
    assert {"judge", "summarize"} <= ran_stages(both.stdout) <= {"check_params", "judge", "summarize"}
    m = json.loads((repo / "metrics/judge.json").read_text(encoding="utf-8"))
    assert m["usage"]["judgments_from_cache"] == lora["usage"]["judgments_needed"]
    assert m["usage"]["judgments_asked"] == m["usage"]["judgments_needed"] - lora["usage"]["judgments_needed"]
    assert requests() == asked + m["usage"]["requests"]
    report = (repo / "plots/report.md").read_text(encoding="utf-8")
    assert "## The judge's verdicts" in report and "Consistency: the two orders agreed in" in report
    rows = (repo / "plots/comparisons.csv").read_text(encoding="utf-8").splitlines()
    assert "win-rate_p_holm" in rows[0]
    summary = json.loads((repo / "metrics/summary.json").read_text(encoding="utf-8"))
    assert summary["judge_consistency"] == pytest.approx(m["consistency"])

    # Nothing changed: nothing runs, nothing is asked.
    again = dvc(repo, "repro")
    assert ran_stages(again.stdout) == set() and requests() == asked + m["usage"]["requests"]

    # The key: sent (the server refuses requests without it), and in no file of the workspace (outputs, dvc.lock, params, DVC's cache) or DVC's output.
    assert KEY not in first.stdout + first.stderr + both.stdout + both.stderr
    for path in [*repo.rglob("*")]:
        if path.is_file() and ".git" not in path.parts:
            assert KEY.encode() not in path.read_bytes(), path
    assert "MEDQA_JUDGE_TEST_KEY" in (repo / "params.yaml").read_text(encoding="utf-8")  # the variable's name only
