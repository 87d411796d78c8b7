"""Pairwise judgments of two answers to one medical question by an OpenAI-compatible chat endpoint
(vLLM, SGLang, Ollama, llama-cpp-python's server, or an API), as medical-LLM papers report them:
win, tie or loss.

Each pair is asked in both orders; a verdict counts only when the two orders agree, otherwise it
is a tie, and the share that agree is the judge's consistency. A reply that is not the verdict
JSON is counted as unparseable, never guessed. Judgments are cached by the judge's model, its
settings, the rubric's hash, the question and both answers, so asking again costs nothing. The API
key is read from the environment variable params name, sent in the Authorization header and never
logged. The stage is stages/judge.py; the rates and their statistics are evaluate/win_rates.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from medqa_scale.core.cli import PipelineError

log = logging.getLogger(__name__)

# Appended to the rubric (params judge.rubric): the parser reads exactly this shape.
OUTPUT_FORMAT = '只输出一个 JSON 对象：{"winner": "A" 或 "B" 或 "tie", "reason": "一句话理由"}'
REASON_CHARS = 200  # a bound in the schema: a grammar-constrained small model otherwise writes its reason until max_tokens
VERDICT_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["winner", "reason"],
                  "properties": {"winner": {"type": "string", "enum": ["A", "B", "tie"]},
                                 "reason": {"type": "string", "maxLength": REASON_CHARS}}}
# Structured output, most specific first: OpenAI's json_schema (OpenAI, vLLM, SGLang, Ollama), then
# json_object with a schema (llama-cpp-python's server, which refuses json_schema), then the rubric alone.
RESPONSE_FORMATS = (
    {"type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA, "strict": True}},
    {"type": "json_object", "schema": VERDICT_SCHEMA},
    None,
)
RETRY_STATUS = {429, 500, 502, 503, 504}
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


def redacted(url: str) -> str:
    """The endpoint as messages and logs show it: any user:password@ in it left out."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return url
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()


def system_prompt(rubric: str) -> str:
    return rubric.rstrip() + "\n" + OUTPUT_FORMAT


def rubric_hash(rubric: str) -> str:
    return hashlib.sha256(rubric.encode()).hexdigest()[:16]


def cache_key(judge: str, rubric: str, question: str, answer_a: str, answer_b: str) -> str:
    """One ordered judgment: the judge (its model and settings, Judge.identity), the rubric's hash,
    the question and both answers in order."""
    return hashlib.sha256(json.dumps([judge, rubric_hash(rubric), question, answer_a, answer_b],
                                     ensure_ascii=False).encode()).hexdigest()


def prompt(rubric: str, question: str, answer_a: str, answer_b: str) -> list[dict]:
    return [{"role": "system", "content": system_prompt(rubric)},
            {"role": "user", "content": f"【问题】\n{question}\n\n【回答A】\n{answer_a}\n\n【回答B】\n{answer_b}"}]


def parse_verdict(text: str | None) -> str | None:
    """"A", "B" or "tie" from a reply that is exactly the verdict JSON (a ```json fence allowed);
    None for anything else."""
    return parse_reply(text)["verdict"]


def parse_reply(text: str | None) -> dict:
    """{"verdict": "A" | "B" | "tie" | None, "reason": its reason or None}: parse_verdict's rule."""
    none = {"verdict": None, "reason": None}
    if not isinstance(text, str):
        return none
    body = text.strip()
    if m := _FENCE.match(body):
        body = m.group(1)
    try:
        obj = json.loads(body)
    except ValueError:
        return none
    winner = obj.get("winner") if isinstance(obj, dict) else None
    if winner not in ("A", "B", "tie"):
        return none
    reason = obj.get("reason")
    return {"verdict": winner, "reason": reason if isinstance(reason, str) else None}


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
    needed: int = 0  # distinct ordered judgments the pairs need
    asked: int = 0   # of them, not in the cache: asked
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict:
        return {"requests": self.requests, "retries": self.retries, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "unparseable_replies": self.unparseable,
                "request_seconds": round(self.seconds, 3), "judgments_needed": self.needed, "judgments_asked": self.asked,
                "judgments_from_cache": self.needed - self.asked}


class Judge:
    """An OpenAI-compatible chat endpoint at `base_url` (…/v1) asked for verdicts, at most
    `max_concurrent` at once and `budget` requests in all; 429 and 5xx are retried with exponential
    backoff (`retries` times, from `backoff_s`)."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, temperature: float = 0.0,
                 seed: int = 0, max_tokens: int = 256, max_concurrent: int = 4, budget: int = 10_000,
                 timeout_s: float = 120.0, retries: int = 4, backoff_s: float = 1.0):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.shown = redacted(self.url)  # what messages name: the endpoint without credentials
        self.model, self.temperature, self.seed, self.max_tokens = model, temperature, seed, max_tokens
        self.max_concurrent, self.budget, self.timeout_s = max_concurrent, budget, timeout_s
        self.retries, self.backoff_s = retries, backoff_s
        self.format = 0  # index into RESPONSE_FORMATS: the most specific one the server has not refused
        self._key = api_key
        self.usage = Usage()

    def __repr__(self) -> str:  # never the key
        return f"Judge({self.shown!r}, model={self.model!r})"

    @property
    def identity(self) -> str:
        """What decides a judgment besides the prompt: the model and its sampling settings (not the endpoint)."""
        return json.dumps({"model": self.model, "temperature": self.temperature, "seed": self.seed,
                           "max_tokens": self.max_tokens}, sort_keys=True)

    def ask(self, messages: list[dict]) -> str | None:
        """The reply's text (None when the reply has none). A server that refuses a response_format
        is asked again with the next one (RESPONSE_FORMATS), and is not offered it again."""
        body = {"model": self.model, "messages": messages, "temperature": self.temperature, "seed": self.seed,
                "max_tokens": self.max_tokens}
        while True:
            shape = RESPONSE_FORMATS[self.format]
            try:
                reply = self._post(body if shape is None else {**body, "response_format": shape})
                break
            except _Refused as e:
                with self.usage.lock:
                    if RESPONSE_FORMATS[self.format] is shape:
                        self.format += 1
                        log.info("the judge at %s refused response_format %s (%s): asking with %s", self.shown,
                                 shape["type"], e, (RESPONSE_FORMATS[self.format] or {"type": "the rubric alone"})["type"])
        usage = reply.get("usage") or {}
        with self.usage.lock:
            self.usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)
        try:
            return reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return None

    def verdict(self, messages: list[dict]) -> dict:
        """parse_reply of the answer; an unparseable reply is asked once more, then counted."""
        for _ in range(2):
            parsed = parse_reply(self.ask(messages))
            if parsed["verdict"] is not None:
                return parsed
        with self.usage.lock:
            self.usage.unparseable += 1
        return parsed

    def _post(self, body: dict) -> dict:
        data = json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        for attempt in range(self.retries + 1):
            with self.usage.lock:
                if self.usage.requests >= self.budget:
                    raise PipelineError(f"the judge's request budget ({self.budget}, judge.max_requests) is spent; "
                                        "raise it or judge fewer runs (what was asked is kept for the next run)")
                self.usage.requests += 1
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(urllib.request.Request(self.url, data, headers), timeout=self.timeout_s) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as e:
                detail = _error_text(e)
                # A refusal of the structured-output form names it (llama-cpp-python's server answers one with
                # 500, not 400); any other 4xx is about the request itself and stops with the server's words
                if "response_format" in body and re.search(r"response_format|json_schema|json_object|schema", detail):
                    raise _Refused(f"HTTP {e.code}: {detail[:200]}") from None
                if e.code in (400, 404, 413, 422):
                    raise PipelineError(f"the judge at {self.shown} refused the request (HTTP {e.code}: "
                                        f"{detail[:300] or 'no detail'}); check judge.model, and that the judge's "
                                        "context holds the rubric, a question and two answers") from None
                if e.code in RETRY_STATUS and attempt < self.retries:
                    wait = _retry_after(e) or self.backoff_s * 2 ** attempt
                    log.info("judge: HTTP %d, retrying in %.1f s", e.code, wait)
                    with self.usage.lock:
                        self.usage.retries += 1
                    time.sleep(wait)
                    continue
                if e.code in (401, 403):
                    raise PipelineError(f"the judge at {self.shown} refused the key (HTTP {e.code}): set the API key "
                                        "in the environment variable judge.api_key_env names") from None
                raise PipelineError(f"the judge at {self.shown} answered HTTP {e.code}"
                                    f"{' after ' + str(self.retries) + ' retries' if e.code in RETRY_STATUS else ''}"
                                    f" ({detail[:200] or 'no detail'}); check the server and judge.model") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                raise PipelineError(f"cannot reach the judge at {self.shown} ({reason}); start the server or fix "
                                    "judge.base_url (a local one: python -m llama_cpp.server --model <file.gguf>)") from None
            finally:
                with self.usage.lock:
                    self.usage.seconds += time.perf_counter() - start
        raise AssertionError("unreachable")


class _Refused(Exception):
    """The server refused the request's structured-output form (an error that names it)."""


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        return error.read(4096).decode("utf-8", "replace")
    except OSError:
        return ""


def _retry_after(error: urllib.error.HTTPError) -> float | None:
    try:
        return float(error.headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def judge_pairs(judge: Judge, rubric: str, pairs: list[dict], cache: dict[str, dict], progress=None) -> list[dict]:
    """Each pair {"question", "run", "other"} (the two answers) judged in both orders, from `cache`
    where it holds the ordered judgment ({"verdict", "reason"}; updated in place with what was
    asked). Two identical answers are a tie without asking. Returns per pair: the judgment with the
    run first and with it second, the outcome (combine), whether the orders agree and whether the
    answers were identical. `progress` (a tqdm bar) is told each request's end; judge.usage counts
    the distinct ordered judgments needed and those asked."""
    asks = {}
    for p in pairs:
        if p["run"] == p["other"]:
            continue
        for a, b in ((p["run"], p["other"]), (p["other"], p["run"])):
            key = cache_key(judge.identity, rubric, p["question"], a, b)
            asks[key] = None if key in cache else prompt(rubric, p["question"], a, b)
    judge.usage.needed += len(asks)
    asks = {k: m for k, m in asks.items() if m is not None}
    if progress is not None:
        progress.reset(total=len(asks))

    def one(item):
        key, messages = item
        verdict = judge.verdict(messages)
        if progress is not None:
            progress.update(1)
        return key, verdict

    with ThreadPoolExecutor(max(1, judge.max_concurrent)) as pool:
        try:
            for key, verdict in pool.map(one, asks.items()):
                cache[key] = verdict
                judge.usage.asked += 1
        except BaseException:
            pool.shutdown(cancel_futures=True)  # what was answered stays in the cache; stop asking
            raise
    out = []
    for p in pairs:
        if p["run"] == p["other"]:
            tie = {"verdict": "tie", "reason": None}
            out.append({"run_first": tie, "run_second": tie, "outcome": "tie", "consistent": True, "identical": True})
            continue
        first = cache[cache_key(judge.identity, rubric, p["question"], p["run"], p["other"])]
        second = cache[cache_key(judge.identity, rubric, p["question"], p["other"], p["run"])]
        out.append({"run_first": first, "run_second": second, "outcome": combine(first["verdict"], second["verdict"]),
                    "consistent": consistent(first["verdict"], second["verdict"]), "identical": False})
    return out
