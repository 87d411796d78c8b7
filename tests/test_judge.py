"""medqa_scale.evaluate.judge against a local OpenAI-compatible HTTP server that this test scripts:
both orders asked, the order rule, the cache, retries on 429, the one message for a closed port,
unparseable replies counted, the key sent and never shown, each response_format a server refuses
replaced by the next. The stage against llama-cpp-python's server is tests/test_judge_stage.py.

Run: python -m pytest tests/test_judge.py -q
"""

from __future__ import annotations

import re

import pytest
from support.judge_server import prefers_longer, server  # noqa: F401  (the fixture)
from support.local import free_port

from medqa_scale.core.cli import PipelineError
from medqa_scale.evaluate.judge import (OUTPUT_FORMAT, Judge, cache_key, combine, consistent, judge_pairs, parse_reply,
                                        parse_verdict, redacted)

KEY = "sk-test-0123456789"
RUBRIC = "比较两个回答的医学正确性、安全性和有用性。"


def test_the_verdict_parser_is_strict():
    assert parse_verdict('{"winner": "A", "reason": "x"}') == "A"
    assert parse_verdict('```json\n{"winner": "tie"}\n```') == "tie"
    assert parse_reply('{"winner": "B", "reason": "更安全"}') == {"verdict": "B", "reason": "更安全"}
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
    results = judge_pairs(judge, RUBRIC, pairs, cache)
    assert [r["outcome"] for r in results] == ["win", "loss"] and all(r["consistent"] for r in results)
    assert len(s.bodies) == 4 and len(cache) == 4  # two orders per pair
    asked = {re.search(r"【回答A】\n(.*?)\n\n", b["messages"][1]["content"], re.S).group(1) for b in s.bodies}
    assert asked == {p[k] for p in pairs for k in ("run", "other")}  # each answer was A once
    assert all(b["temperature"] == 0 and b["seed"] == 0 and b["response_format"]["type"] == "json_schema" for b in s.bodies)
    assert all(b["messages"][0]["content"] == RUBRIC + "\n" + OUTPUT_FORMAT for b in s.bodies)
    assert results[0]["run_first"] == {"verdict": "A", "reason": "更完整"}
    assert set(s.auth) == {f"Bearer {KEY}"} and KEY not in repr(judge)
    # Nothing new: no request. One new pair: only its two orders.
    judge_pairs(judge, RUBRIC, pairs, cache)
    assert len(s.bodies) == 4
    judge_pairs(judge, RUBRIC, pairs + [{"question": "咳嗽？", "run": "多喝水", "other": "止咳"}], cache)
    assert len(s.bodies) == 6
    assert cache_key("judge-model", RUBRIC, "q", "a", "b") != cache_key("judge-model", RUBRIC + "。", "q", "a", "b")
    assert Judge(s.url, "judge-model", max_tokens=100).identity != judge.identity  # a setting is part of the key
    assert judge.usage.requests == 6 and judge.usage.prompt_tokens == 60


def test_429_twice_then_200_is_retried(server):
    calls = []

    def flaky(body):
        calls.append(1)
        return (429, "slow down") if len(calls) <= 2 else (200, '{"winner": "B", "reason": "r"}')
    s = server(flaky)
    judge = Judge(s.url, "m", backoff_s=0.01)
    assert judge.verdict([{"role": "user", "content": "x"}])["verdict"] == "B"
    assert len(s.bodies) == 3 and judge.usage.retries == 2


def test_an_unparseable_reply_is_asked_again_then_counted_not_scored(server):
    s = server(lambda body: (200, "我认为A更好"))
    judge = Judge(s.url, "m")
    [result] = judge_pairs(judge, RUBRIC, [{"question": "q", "run": "a", "other": "b"}], {})
    assert result["outcome"] == "unparseable" and not result["consistent"]
    assert judge.usage.unparseable == 2 and len(s.bodies) == 4  # each order: one retry


def test_a_server_without_response_format_gets_the_rubric_alone(server):
    s = server(lambda body: (400, "response_format not supported") if "response_format" in body
               else (200, '{"winner": "tie", "reason": "r"}'))
    judge = Judge(s.url, "m")
    assert judge.verdict([{"role": "user", "content": "x"}])["verdict"] == "tie"
    assert [b.get("response_format", {}).get("type") for b in s.bodies] == ["json_schema", "json_object", None]
    judge.verdict([{"role": "user", "content": "y"}])  # not offered again
    assert len(s.bodies) == 4 and "response_format" not in s.bodies[-1]


def test_a_server_that_takes_json_object_but_not_json_schema_gets_the_schema_that_way(server):
    # llama-cpp-python's server: json_schema fails its request validation with HTTP 500 naming response_format
    s = server(lambda body: (500, "body.response_format.type: Input should be 'text' or 'json_object'")
               if body.get("response_format", {}).get("type") == "json_schema" else (200, '{"winner": "A", "reason": "r"}'))
    judge = Judge(s.url, "m", backoff_s=0.01)
    assert judge.verdict([{"role": "user", "content": "x"}])["verdict"] == "A"
    assert s.bodies[1]["response_format"]["schema"]["properties"]["winner"]["enum"] == ["A", "B", "tie"]
    assert len(s.bodies) == 2 and judge.usage.retries == 0  # a refusal, not an outage: no backoff


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


def test_credentials_in_the_endpoint_are_never_shown():
    url = f"http://user:secret@127.0.0.1:{free_port()}/v1"
    assert redacted(url) == url.replace("user:secret@", "") and redacted("not a url") == "not a url"
    judge = Judge(url, "m")
    assert "secret" not in repr(judge)
    with pytest.raises(PipelineError) as e:
        judge.verdict([{"role": "user", "content": "x"}])
    assert "secret" not in str(e.value) and "cannot reach the judge at http://127.0.0.1:" in str(e.value)


def test_a_request_the_server_refuses_for_itself_stops_with_its_words_and_keeps_the_schema(server):
    s = server(lambda body: (400, "This model's maximum context length is 2048 tokens"))
    judge = Judge(s.url, "m")
    with pytest.raises(PipelineError, match=r"refused the request \(HTTP 400: .*maximum context length is 2048"):
        judge.verdict([{"role": "user", "content": "x"}])
    assert len(s.bodies) == 1 and judge.format == 0  # not taken for a refusal of response_format
