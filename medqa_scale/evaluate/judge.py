"""Pairwise judgments of two answers to one medical question by an OpenAI-compatible chat endpoint
(vLLM, SGLang, Ollama, llama-cpp-python's server, or an API), as medical-LLM papers report them:
win, tie or loss.

Each pair is asked in both orders; a verdict counts only when the two orders agree, otherwise it
is a tie, and the share that agree is the judge's consistency. A reply that is not the verdict
JSON is counted as unparseable, never guessed. Judgments are cached by the judge's model, the
rubric's hash, the question and both answers, so asking again costs nothing. The API key is read
from the environment variable params name, sent in the Authorization header and never logged.

The stage that runs it over every run's answers is not wired yet (issue 25); this module is its
library: prompts, parsing, the order rule, the cache key and the client.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from medqa_scale.core.cli import PipelineError

log = logging.getLogger(__name__)

# Medical correctness first, then safety, then helpfulness; a tie is allowed.
DEFAULT_RUBRIC = (
    "你是一名资深临床医生，负责比较两个AI助手对同一个医学问题的回答。请依次按以下标准评判：\n"
    "1. 医学正确性：内容是否符合医学事实和诊疗规范，有无错误；\n"
    "2. 安全性：有无可能造成伤害的建议，需要时是否建议及时就医；\n"
    "3. 有用性：是否切题、清楚、可操作。\n"
    "两个回答同样好或同样差时判为平局。不要因回答的长短或先后顺序偏向任何一方。\n"
    '只输出一个 JSON 对象：{"winner": "A" 或 "B" 或 "tie", "reason": "一句话理由"}')
VERDICT_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["winner", "reason"],
                  "properties": {"winner": {"type": "string", "enum": ["A", "B", "tie"]}, "reason": {"type": "string"}}}
RETRY_STATUS = {429, 500, 502, 503, 504}
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def rubric_hash(rubric: str) -> str:
    return hashlib.sha256(rubric.encode()).hexdigest()[:16]


def cache_key(model: str, rubric: str, question: str, answer_a: str, answer_b: str) -> str:
    """One ordered judgment: the judge's model, the rubric, the question and both answers in order."""
    return hashlib.sha256(json.dumps([model, rubric_hash(rubric), question, answer_a, answer_b],
                                     ensure_ascii=False).encode()).hexdigest()


def prompt(rubric: str, question: str, answer_a: str, answer_b: str) -> list[dict]:
    return [{"role": "system", "content": rubric},
            {"role": "user", "content": f"【问题】\n{question}\n\n【回答A】\n{answer_a}\n\n【回答B】\n{answer_b}"}]


def parse_verdict(text: str | None) -> str | None:
    """"A", "B" or "tie" from a reply that is exactly the verdict JSON (a ```json fence allowed);
    None for anything else."""
    if not isinstance(text, str):
        return None
    body = text.strip()
    if m := _FENCE.match(body):
        body = m.group(1)
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    winner = obj.get("winner") if isinstance(obj, dict) else None
    return winner if winner in ("A", "B", "tie") else None


def combine(run_first: str | None, run_second: str | None) -> str:
    """The run's outcome from the verdict with the run as A and the one with the run as B: "win" or
    "loss" only when both orders agree, "tie" when they disagree or either says tie, "unparseable"
    when either reply could not be read."""
    if run_first is None or run_second is None:
        return "unparseable"
    if run_first == "A" and run_second == "B":
        return "win"
    if run_first == "B" and run_second == "A":
        return "loss"
    return "tie"


def consistent(run_first: str | None, run_second: str | None) -> bool:
    """Whether the two orders name the same answer (or both a tie)."""
    swap = {"A": "B", "B": "A", "tie": "tie"}
    return run_first is not None and run_second is not None and swap[run_first] == run_second


@dataclass
class Usage:
    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    unparseable: int = 0
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Judge:
    """An OpenAI-compatible chat endpoint at `base_url` (…/v1) asked for verdicts, at most
    `max_concurrent` at once and `budget` requests in all; 429 and 5xx are retried with exponential
    backoff (`retries` times, from `backoff_s`)."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, temperature: float = 0.0,
                 seed: int = 0, max_tokens: int = 256, max_concurrent: int = 4, budget: int = 10_000,
                 timeout_s: float = 120.0, retries: int = 4, backoff_s: float = 1.0, json_schema: bool = True):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.temperature, self.seed, self.max_tokens = model, temperature, seed, max_tokens
        self.max_concurrent, self.budget, self.timeout_s = max_concurrent, budget, timeout_s
        self.retries, self.backoff_s, self.json_schema = retries, backoff_s, json_schema
        self._key = api_key
        self.usage = Usage()

    def __repr__(self) -> str:  # never the key
        return f"Judge({self.url!r}, model={self.model!r})"

    def ask(self, messages: list[dict]) -> str | None:
        """The reply's text (None when the reply has none); one more request with a plain prompt when the server refuses response_format."""
        body = {"model": self.model, "messages": messages, "temperature": self.temperature, "seed": self.seed,
                "max_tokens": self.max_tokens}
        if self.json_schema:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA, "strict": True}}
        try:
            reply = self._post(body)
        except _Refused as e:
            if "response_format" not in body:
                raise PipelineError(f"the judge at {self.url} refused the request ({e}); check judge.model") from None
            log.info("the judge at %s refused response_format (%s): asking with the rubric alone", self.url, e)
            self.json_schema = False
            reply = self._post({k: v for k, v in body.items() if k != "response_format"})
        usage = reply.get("usage") or {}
        with self.usage.lock:
            self.usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)
        try:
            return reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return None

    def verdict(self, messages: list[dict]) -> str | None:
        """A parsed verdict; an unparseable reply is asked once more, then counted."""
        for _ in range(2):
            parsed = parse_verdict(self.ask(messages))
            if parsed is not None:
                return parsed
        with self.usage.lock:
            self.usage.unparseable += 1
        return None

    def _post(self, body: dict) -> dict:
        data = json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        for attempt in range(self.retries + 1):
            with self.usage.lock:
                if self.usage.requests >= self.budget:
                    raise PipelineError(f"the judge's request budget ({self.budget}, judge.max_requests) is spent; "
                                        "raise it or judge fewer runs")
                self.usage.requests += 1
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(urllib.request.Request(self.url, data, headers), timeout=self.timeout_s) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as e:
                if e.code in RETRY_STATUS and attempt < self.retries:
                    wait = _retry_after(e) or self.backoff_s * 2 ** attempt
                    log.info("judge: HTTP %d, retrying in %.1f s", e.code, wait)
                    with self.usage.lock:
                        self.usage.retries += 1
                    time.sleep(wait)
                    continue
                if e.code in (400, 422):
                    raise _Refused(f"HTTP {e.code}") from None
                if e.code in (401, 403):
                    raise PipelineError(f"the judge at {self.url} refused the key (HTTP {e.code}): set the API key "
                                        "in the environment variable judge.api_key_env names") from None
                raise PipelineError(f"the judge at {self.url} answered HTTP {e.code} "
                                    f"{'after ' + str(self.retries) + ' retries' if e.code in RETRY_STATUS else ''}; "
                                    "check the server and judge.model") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                raise PipelineError(f"cannot reach the judge at {self.url} ({reason}); start the server or fix "
                                    "judge.base_url (a local one: python -m llama_cpp.server --model <file.gguf>)") from None
            finally:
                with self.usage.lock:
                    self.usage.seconds += time.perf_counter() - start
        raise AssertionError("unreachable")


class _Refused(Exception):
    """The server answered 400/422: most often a response_format it does not take."""


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    try:
        return float(error.headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def judge_pairs(judge: Judge, rubric: str, pairs: list[dict], cache: dict[str, str | None],
                progress=None) -> list[dict]:
    """Each pair {"question", "run", "other"} (the two answers) judged in both orders, from `cache`
    where it holds the ordered judgment (updated in place with what was asked). Returns per pair:
    the verdict with the run first and second, the outcome (combine) and whether the orders agree."""
    asks = []
    for p in pairs:
        for a, b in ((p["run"], p["other"]), (p["other"], p["run"])):
            key = cache_key(judge.model, rubric, p["question"], a, b)
            if key not in cache:
                asks.append((key, prompt(rubric, p["question"], a, b)))
    unique = dict(asks)

    def one(item):
        key, messages = item
        verdict = judge.verdict(messages)
        if progress is not None:
            progress.update(1)
        return key, verdict

    with ThreadPoolExecutor(max(1, judge.max_concurrent)) as pool:
        for key, verdict in pool.map(one, unique.items()):
            cache[key] = verdict
    out = []
    for p in pairs:
        first = cache[cache_key(judge.model, rubric, p["question"], p["run"], p["other"])]
        second = cache[cache_key(judge.model, rubric, p["question"], p["other"], p["run"])]
        out.append({"run_first": first, "run_second": second, "outcome": combine(first, second),
                    "consistent": consistent(first, second)})
    return out
