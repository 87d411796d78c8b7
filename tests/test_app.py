"""The web page (python -m medqa_scale.apps.app), started as the README says on the small DVC run that
test_pipeline shares, and driven in a real headless browser (Playwright with Chromium; .ci/run
installs Debian's chromium), through its API (gradio_client), and under 20 concurrent asks.

Run: python -m pytest tests/test_app.py -q
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.dvc_repo import RUNS, dvc_env
from support.local import free_port, launch_chromium
from support.workspace import build_workspace, expected_answers

pytestmark = pytest.mark.slow  # the web page in a real browser, and under load

ROOT = Path(__file__).resolve().parents[1]
ASK_RUNS = ["base", "base-4bit", *RUNS]  # as the page lists them
class App:
    """`python -m medqa_scale.apps.app` running in `workspace`, stopped on close."""

    def __init__(self, workspace: Path, log: Path, args=("--asks-per-minute", "0"), env: dict | None = None,
                 auth: tuple[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log, self.auth = log, auth
        code = workspace if (workspace / "medqa_scale").is_dir() else ROOT  # the repository copy's own code
        env = {**dvc_env(), "PYTHONPATH": str(code), **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "medqa_scale.apps.app", "--port", str(self.port), *args],
                                     cwd=workspace, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the app exited:\n{log.read_text()[-4000:]}"
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(1)
        raise AssertionError(f"the app did not start in 240 s:\n{log.read_text()[-4000:]}")

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False, auth=self.auth)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def app(repo, first_run, tmp_path_factory):
    started = App(repo, tmp_path_factory.mktemp("app") / "app.log")
    yield started
    started.close()


def test_questions(repo: Path, n: int) -> list[dict]:
    return [json.loads(line) for line in (repo / "data/split/test.jsonl").read_text(encoding="utf-8").splitlines()[:n]]


test_questions.__test__ = False  # a helper, not a test


def predictions(repo: Path, run: str) -> dict[str, str]:
    rows = (repo / f"data/predictions/{run}.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["id"]: r["prediction"] for r in map(json.loads, rows)}


def largest_rouge_l_difference(repo: Path, run_a: str, run_b: str) -> str:
    """The test question on which two runs' ROUGE-L differ most, the first in test order on ties."""
    def scores(run):
        rows = (repo / f"data/scores/{run}.jsonl").read_text(encoding="utf-8").splitlines()
        return {r["id"]: r["rouge-l"] for r in map(json.loads, rows)}

    a, b = scores(run_a), scores(run_b)
    order = [r["id"] for r in test_questions(repo, 10_000) if r["id"] in a and r["id"] in b]
    return max(order, key=lambda q: (abs(a[q] - b[q]), -order.index(q)))


def max_new_tokens(repo: Path) -> int:
    from medqa_scale.core.params import read_yaml

    return read_yaml(repo / "params.yaml")["evaluate"]["max_new_tokens"]


def test_the_page_answers_as_every_run_shows_a_test_item_and_the_results_in_a_browser(app, repo, first_run):
    from playwright.sync_api import expect, sync_playwright

    experiment = re.search(r"Ran experiment\(s\): (\S+)", first_run.stdout).group(1)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app.url)
        expect(page.locator("#notice")).to_contain_text("synthetic data")
        # Ask: one answer per run plus the base models.
        page.locator("#question textarea").fill("高血压患者平时要注意什么？")
        page.locator("#ask").click()
        expect(page.locator("#ask-status")).to_contain_text("Done", timeout=120_000)
        for run in ASK_RUNS:
            assert page.locator(f"#answer-{run} textarea").input_value().strip(), f"{run} gave no answer"
        # Test set: the question two runs differ on most, with the reference, every answer and its scores.
        page.get_by_role("tab", name="Test set").click()
        page.locator("#largest").click()
        item = page.locator("#item")
        # The question is worked out from the score files, and awaited: the item shown before the
        # click answers too, and reading it then raced the update.
        qid = largest_rouge_l_difference(repo, page.locator("#run-a input").input_value(),
                                         page.locator("#run-b input").input_value())
        expect(item).to_contain_text(f"({qid})")
        reference = next(r["answer"] for r in test_questions(repo, 10_000) if r["id"] == qid)
        expect(item).to_contain_text(reference)
        for run in ASK_RUNS:
            card = item.locator(f'[data-run="{run}"]')
            expect(card).to_contain_text(re.compile(r"ROUGE-L \d+\.\d · BLEU \d+\.\d"))
            expect(card.locator(".answer-text")).to_have_text(predictions(repo, run)[qid])
        # Results: the table with intervals, in the workspace and in the experiment the run made.
        page.get_by_role("tab", name="Results").click()
        table = page.locator("#results-table")
        for setup in ("lora-200", "qlora-400", "base-4bit"):
            expect(table).to_contain_text(setup)
        expect(table).to_contain_text(re.compile(r"\d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]"))
        page.locator("#experiment input").click()
        page.get_by_role("option", name=f"{experiment} (experiment)").click()
        expect(table).to_contain_text("qlora-400")
        browser.close()


def test_the_page_answers_test_questions_as_the_pipeline_did(app, repo):
    client, n = app.client(), max_new_tokens(repo)
    expected = {run: predictions(repo, run) for run in ASK_RUNS}
    for record in test_questions(repo, 3):
        status, *answers = client.predict(record["question"], n, api_name="/ask")
        assert status.startswith("Done")
        assert dict(zip(ASK_RUNS, answers)) == {run: expected[run][record["id"]] for run in ASK_RUNS}


def test_20_concurrent_asks_all_complete_without_error(app, repo):
    questions = [r["question"] for r in test_questions(repo, 20)]
    client = app.client()
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda q: client.predict(q, 4, api_name="/ask"), questions))
    assert len(results) == 20
    assert all(status.startswith("Done") and all(answers) for status, *answers in results), results


def test_a_question_over_the_length_limit_is_refused_with_a_message(app):
    status, *answers = app.client().predict("头痛" * 300, 4, api_name="/ask")
    assert status.startswith("**Refused:**") and "preprocess.max_source_len" in status
    assert not any(answers)


@pytest.fixture(scope="module")
def unfinished(tmp_path_factory, tiny_base) -> Path:
    """A workspace where only the base model and two runs outside params' matrix exist: no adapter
    for any run params names, no predictions, scores or results."""
    return build_workspace(tmp_path_factory.mktemp("unfinished"), tiny_base)


def test_runs_without_adapters_or_answers_show_notes_and_the_page_keeps_working(unfinished, tmp_path, monkeypatch):
    app = App(unfinished, tmp_path / "app.log")
    try:
        status, *answers = app.client().predict("感冒了怎么办？", 6, api_name="/ask")
        with urllib.request.urlopen(app.url, timeout=10) as r:
            assert r.status == 200
    finally:
        app.close()
    from medqa_scale.apps import app as page
    from medqa_scale.core.params import read_yaml, runs_of

    p = read_yaml(unfinished / "params.yaml")
    shown = dict(zip(runs_of(p["methods"], p["split"]["scales"], p["train"]["seeds"]), answers, strict=True))
    assert status.startswith("Done")
    for run in ("base", "base-4bit"):  # max_new_tokens 6, as expected_answers generates
        assert shown[run] == expected_answers(unfinished, run, ["感冒了怎么办？"])[0]
    assert shown["lora-1k-42"].startswith("Not available: models/adapters/lora-1k-42 holds no adapter: run "
                                          "`dvc repro train@lora-1k-42`")
    monkeypatch.chdir(unfinished)
    from medqa_scale.serve.experiments import Snapshot, load_view

    view = load_view(Snapshot(None))
    assert view.answers.empty and view.results is None and view.figures == {}
    assert "`lora-1k-42`: no answers yet; run `dvc repro evaluate`" in view.missing
    assert "`base`: no answers yet; run `dvc repro evaluate`" in view.missing
    assert page.item_html(view, None) == "<p>Pick a test question.</p>"
    assert "run `dvc repro summarize`" in page.report_without_images(view.report)


def test_the_app_binds_to_this_machine_only_by_default():
    from medqa_scale.apps import app as page

    assert page.parse_args([]).host == "127.0.0.1"
    assert page.parse_args(["--host", "0.0.0.0", "--port", "8080"]).port == 8080
    assert os.environ.get("GRADIO_ANALYTICS_ENABLED") == "False"  # set before gradio is imported


def test_serving_other_machines_needs_a_login_from_the_environment(unfinished, tmp_path):
    # Bound to 0.0.0.0 without credentials: refused before anything loads, with the way to set them.
    env = {**dvc_env(), "PYTHONPATH": str(ROOT)}
    env.pop("MEDQA_APP_AUTH", None)
    refused = subprocess.run([sys.executable, "-m", "medqa_scale.apps.app", "--host", "0.0.0.0", "--port", str(free_port())],
                             cwd=unfinished, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "MEDQA_APP_AUTH=user:password" in refused.stderr and "Traceback" not in refused.stderr
    # With a login from the environment: no page, config or API without it; answered with it.
    secret = "s3cret-" + os.urandom(4).hex()
    app = App(unfinished, tmp_path / "app.log", args=("--host", "0.0.0.0", "--asks-per-minute", "2"),
              env={"MEDQA_APP_AUTH": f"nurse:{secret}"}, auth=("nurse", secret))
    try:
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(app.url + "config", timeout=10)
        assert denied.value.code == 401
        from gradio_client import Client

        with pytest.raises(Exception):
            Client(app.url, verbose=False).predict("感冒了怎么办？", 4, api_name="/ask")
        with pytest.raises(Exception):
            Client(app.url, verbose=False, auth=("nurse", "wrong")).predict("感冒了怎么办？", 4, api_name="/ask")
        client = app.client()
        answers = [client.predict("感冒了怎么办？", 4, api_name="/ask") for _ in range(3)]
        assert [a[0].startswith("Done") for a in answers] == [True, True, False]
        assert answers[2][0].startswith("**Refused:** over 2 questions a minute for `nurse`")
    finally:
        app.close()
    assert secret not in (tmp_path / "app.log").read_text()  # the password is never logged


def test_a_test_item_shows_each_answers_judgments_in_both_orders():
    import pandas as pd

    from medqa_scale.apps import app as page
    from medqa_scale.serve.browse import judgments_by_answer
    from medqa_scale.serve.experiments import View

    answers = pd.DataFrame([{"id": "q1", "run": r, "answer": a, "rouge-l": 10.0, "bleu": 5.0, "char-bleu-4": 4.0}
                            for r, a in (("base", "多喝水"), ("lora-1k-42", "多休息<必要时>就医"))])
    lines = [{"id": "q1", "run": "lora-1k-42", "against": "base", "outcome": "win", "identical": False,
              "run_first": {"verdict": "A", "reason": "更<安全>"}, "run_second": {"verdict": "B", "reason": "更准确"}}]
    view = View(runs=["base", "lora-1k-42"], questions={"q1": "头痛怎么办？"}, references={"q1": "休息"}, answers=answers,
                missing=[], results=None, report=None, figures={}, data_card=(None, None), judgments=judgments_by_answer(lines))
    shown = page.item_html(view, "q1")
    card = shown.split('data-run="lora-1k-42"')[1]
    assert 'class="judgment" data-against="base"' in card and '<b class="outcome">win</b>' in card
    assert "this answer shown first: this answer better: 更&lt;安全&gt;" in card
    assert "this answer shown second: this answer better: 更准确" in card
    assert "judgment" not in shown.split('data-run="lora-1k-42"')[0]  # base was judged only as the other answer
