"""medqa_scale.evaluate.judge against a local OpenAI-compatible HTTP server that this test scripts:
both orders asked, the order rule, the cache, retries on 429, the one message for a closed port,
unparseable replies counted, the key sent and never shown. (The judge stage and the end-to-end
run against llama-cpp-python's server come with issue 25.)

Run: python -m pytest tests/test_judge.py -q
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.local import free_port

from medqa_scale.core.cli import PipelineError
from medqa_scale.evaluate.judge import (DEFAULT_RUBRIC, Judge, cache_key, combine, consistent, judge_pairs,
                                        parse_verdict)

KEY = "sk-test-0123456789"


class Scripted:
    """A chat-completions server: `decide(request body) -> (status, reply text)`; records requests."""

    def __init__(self, decide):
        self.decide, self.bodies, self.auth = decide, [], []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                server.auth.append(self.headers.get("Authorization"))
                status, text = server.decide(body)
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}],
                                      "usage": {"prompt_tokens": 10, "completion_tokens": 5}} if status == 200
                                     else {"error": {"message": text}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def prefers_longer(body) -> tuple[int, str]:
    """A judge that names the longer answer, whatever the order: always consistent."""
    text = body["messages"][1]["content"]
    a, b = re.search(r"【回答A】\n(.*)\n\n【回答B】\n(.*)", text, re.S).groups()
    winner = "A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie"
    return 200, json.dumps({"winner": winner, "reason": "更完整"}, ensure_ascii=False)


@pytest.fixture
def server():
    made = []

    def start(decide):
        made.append(Scripted(decide))
        return made[-1]
    yield start
    for s in made:
        s.close()


def test_the_verdict_parser_is_strict():
    assert parse_verdict('{"winner": "A", "reason": "x"}') == "A"
    assert parse_verdict('```json\n{"winner": "tie"}\n```') == "tie"
    for bad in ("A", '{"winner": "a"}', "The winner is A", '["A"]', "", None, '{"winner": "A"} trailing'):
        assert parse_verdict(bad) is None, bad


def test_a_verdict_counts_only_when_both_orders_agree():
    assert combine("A", "B") == "win" and combine("B", "A") == "loss"
    assert combine("A", "A") == "tie" and combine("tie", "B") == "tie" and combine(None, "A") == "unparseable"
    assert consistent("A", "B") and consistent("tie", "tie") and not consistent("A", "A")


def test_both_orders_are_asked_and_a_rerun_asks_nothing(server):
    s = server(prefers_longer)
    judge = Judge(s.url, "judge-model", api_key=KEY, max_concurrent=3)
    pairs = [{"question": "头痛怎么办？", "run": "多休息，必要时就医。", "other": "休息。"},
             {"question": "发热怎么办？", "run": "喝水。", "other": "多喝水，体温超过38.5℃可服退热药。"}]
    cache = {}
    results = judge_pairs(judge, DEFAULT_RUBRIC, pairs, cache)
    assert [r["outcome"] for r in results] == ["win", "loss"] and all(r["consistent"] for r in results)
    assert len(s.bodies) == 4 and len(cache) == 4  # two orders per pair
    asked = {re.search(r"【回答A】\n(.*?)\n\n", b["messages"][1]["content"], re.S).group(1) for b in s.bodies}
    assert asked == {p[k] for p in pairs for k in ("run", "other")}  # each answer was A once
    assert all(b["temperature"] == 0 and b["seed"] == 0 and b["response_format"]["type"] == "json_schema" for b in s.bodies)
    assert set(s.auth) == {f"Bearer {KEY}"} and KEY not in repr(judge)
    # Nothing new: no request. One new pair: only its two orders.
    judge_pairs(judge, DEFAULT_RUBRIC, pairs, cache)
    assert len(s.bodies) == 4
    judge_pairs(judge, DEFAULT_RUBRIC, pairs + [{"question": "咳嗽？", "run": "多喝水", "other": "止咳"}], cache)
    assert len(s.bodies) == 6
    assert cache_key("judge-model", DEFAULT_RUBRIC, "q", "a", "b") != cache_key("judge-model", DEFAULT_RUBRIC + "。", "q", "a", "b")
    assert judge.usage.requests == 6 and judge.usage.prompt_tokens == 60


def test_429_twice_then_200_is_retried(server):
    calls = []

    def flaky(body):
        calls.append(1)
        return (429, "slow down") if len(calls) <= 2 else (200, '{"winner": "B", "reason": "r"}')
    s = server(flaky)
    judge = Judge(s.url, "m", backoff_s=0.01)
    assert judge.verdict([{"role": "user", "content": "x"}]) == "B"
    assert len(s.bodies) == 3 and judge.usage.retries == 2


def test_an_unparseable_reply_is_asked_again_then_counted_not_scored(server):
    s = server(lambda body: (200, "我认为A更好"))
    judge = Judge(s.url, "m")
    [result] = judge_pairs(judge, DEFAULT_RUBRIC, [{"question": "q", "run": "a", "other": "b"}], {})
    assert result["outcome"] == "unparseable" and not result["consistent"]
    assert judge.usage.unparseable == 2 and len(s.bodies) == 4  # each order: one retry


def test_a_server_without_response_format_gets_the_rubric_alone(server):
    s = server(lambda body: (400, "response_format not supported") if "response_format" in body
               else (200, '{"winner": "tie", "reason": "r"}'))
    judge = Judge(s.url, "m")
    assert judge.verdict([{"role": "user", "content": "x"}]) == "tie"
    assert ["response_format" in b for b in s.bodies] == [True, False] and not judge.json_schema


def test_a_closed_port_is_one_message_naming_the_endpoint():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(PipelineError, match=rf"cannot reach the judge at {re.escape(url)}/chat/completions .*llama_cpp.server"):
        Judge(url, "m", api_key=KEY).verdict([{"role": "user", "content": "x"}])


def test_the_request_budget_stops_the_judge(server):
    s = server(prefers_longer)
    judge = Judge(s.url, "m", budget=1)
    judge.verdict([{"role": "system", "content": "r"}, {"role": "user", "content": "【回答A】\na\n\n【回答B】\nbb"}])
    with pytest.raises(PipelineError, match="request budget .1"):
        judge.verdict([{"role": "user", "content": "x"}])
