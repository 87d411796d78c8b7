"""Raw question-answer files in the shapes that public Chinese medical QA sets and users' own
dumps come in, read into conversations; every item that cannot be read is counted, never lost.

Everything is detected from the content, never from the file name:
  containers  JSON array, JSON Lines (also when named .json or .txt), CSV and TSV (quoted
              multi-line fields, stray quotes), Parquet, Markdown Q&A (`Q: …`/`A: …`, `### Q1: …`/`A1: …`)
  encodings   UTF-8, UTF-8 with a byte-order mark, GBK and GB18030; a file that mixes them line
              by line is read line by line, and a line that is neither is counted (`undecodable`)
  shapes      Alpaca (instruction/input/output), ShareGPT (conversations of from/value), OpenAI
              messages (role/content), query/response, question/answer, questions/answers as
              lists, Chinese keys (问/答, 问题/回答), {"data": ["问：…", "答：…", …]}, CSV rows of
              department/title/ask/answer (the question is title + ask when both are there);
              each item is told apart on its own, so one file may mix two spellings of a key

An item becomes a list of (question, answer) turns: the last turn is the example, the earlier
ones its history. `fields` maps question and answer, history and department to other key names;
those it leaves out are detected. Near-spellings that public files use are read as the key they
mean (KEY_ALIASES).

Any input ends in records, counted problems, or one PipelineError that names the file and what
to do: deep nesting, truncation, stray bytes and enormous fields never reach the user as a
traceback (tests/test_formats_fuzz.py drives every reader with generated malformed files).
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from medqa_scale.core.cli import PipelineError

ENCODINGS = ("utf-8-sig", "utf-8", "gb18030")  # GB18030 decodes GBK too: it is a superset
QUESTION_KEYS = ("question", "questions", "问", "问题", "q", "Q")
ANSWER_KEYS = ("answer", "answers", "答", "回答", "a", "A")
DEPARTMENT_KEYS = ("department", "科室", "dept")
# Near-spellings real files use, read as the key they mean; tests/test_formats.py names the layout
# that needs each: `instruct` (multi-turn consultation dumps of instruct/input/output/history),
# `prompt`/`completion` (OpenAI's legacy fine-tuning JSON Lines).
KEY_ALIASES = {"instruct": "instruction", "prompt": "instruction", "completion": "output"}
# Words in a key that hint at the question or the answer: only to suggest a `fields:` line when no
# known shape matches, never to read a file.
_QUESTION_HINTS = ("question", "ask", "query", "case", "symptom", "complaint", "problem", "title", "input", "instruction",
                   "问", "症状", "病例", "病情", "主诉")
_ANSWER_HINTS = ("answer", "response", "reply", "diagnosis", "advice", "treatment", "output", "doctor", "solution",
                 "答", "回复", "诊断", "建议", "医生")
USER_ROLES = {"human", "user"}
ASSISTANT_ROLES = {"gpt", "assistant", "bot", "model"}
_MD_QUESTION = re.compile(r"^\s*(?:#+\s*)?Q\d*\s*[:：]\s*(.*)$")
_MD_ANSWER = re.compile(r"^\s*A\d*\s*[:：]\s*(.*)$")
_DIALOGUE_PREFIX = re.compile(r"^\s*(问|答|病人|患者|医生)\s*[:：]\s*", re.S)
EXCERPT_CHARS = 80


class ShapeError(ValueError):
    """An item that is no question-answer conversation; `reason` is the report's key."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Problem:
    """One item left out, where it was, and a short excerpt to find it by."""

    reason: str
    location: str  # "line 12" or "row 3" or "item 7"
    excerpt: str
    keys: list[str] | None = None  # an unknown shape's keys, to suggest a `fields:` line


@dataclass
class FileRead:
    path: Path
    encoding: str
    container: str
    conversations: list[dict] = field(default_factory=list)  # {"turns": [(q, a), ...], "location": ...}
    problems: list[Problem] = field(default_factory=list)

    @property
    def items(self) -> int:
        return len(self.conversations) + len(self.problems)


def decode(data: bytes, path: Path | str = "<bytes>") -> tuple[str, str]:
    """(text, encoding): UTF-8 (with or without BOM) first, then GB18030, which covers GBK."""
    text, encoding, _ = decode_lines(data, path)
    return text, encoding


def decode_lines(data: bytes, path: Path | str = "<bytes>") -> tuple[str, str, list[int]]:
    """(text, encoding, numbers of the lines that could not be decoded). A file in one encoding
    decodes whole. One that mixes UTF-8 and GBK line by line (files concatenated from several
    dumps) decodes line by line, each line UTF-8 first; a line that is neither becomes empty and
    its number is returned, so it is counted, not lost. Mostly undecodable: one message."""
    for encoding in ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding == "utf-8-sig" and not data.startswith(b"\xef\xbb\xbf"):
            encoding = "utf-8"
        return text, encoding, []
    lines, bad, used = [], [], set()
    for n, raw in enumerate(data.split(b"\n"), 1):
        for encoding in ("utf-8", "gb18030"):
            try:
                lines.append(raw.decode(encoding))
                used.add(encoding)
                break
            except UnicodeDecodeError:
                continue
        else:
            lines.append("")
            bad.append(n)
    if len(bad) * 2 > len(lines) or not used:
        raise PipelineError(f"{path} is neither UTF-8 nor GBK/GB18030 ({len(bad)} of {len(lines)} lines are neither); "
                            "re-encode it to UTF-8, e.g. iconv -f <encoding> -t UTF-8")
    return "\n".join(lines), "mixed:" + "+".join(sorted(used)), bad


CONTAINERS = ("json", "jsonl", "csv", "tsv", "parquet", "markdown")


def read_file(path: Path, fields: dict | None = None, container: str = "auto") -> FileRead:
    """Every item of `path` as a conversation, or as a problem with its reason and location.
    `container` other than auto skips the detection."""
    encoding, container, items, problems = read_items(path, container)
    result = FileRead(Path(path), encoding, container, problems=problems)
    for location, obj in items:
        try:
            result.conversations.append({"turns": to_turns(obj, fields), "location": location,
                                         **department_of(obj, (fields or {}).get("department"))})
        except ShapeError as e:
            keys = sorted(map(str, obj))[:20] if e.reason == "unknown_shape" and isinstance(obj, dict) else None
            result.problems.append(Problem(e.reason, location, excerpt(obj), keys))
    return result


def read_items(path: Path, container: str = "auto") -> tuple[str, str, list[tuple[str, object]], list[Problem]]:
    """(encoding, container, [(location, object)], problems of the container itself): the raw items
    of any container above, before any shape is read; other readers (benchmarks) start here."""
    data = Path(path).read_bytes()
    if container == "parquet" or (container == "auto" and data.startswith(b"PAR1")):
        return "binary", "parquet", _parquet_items(path), []
    text, encoding, undecodable = decode_lines(data, path)
    try:
        container, items, problems = _text_items(text, container)
    except PipelineError as e:
        raise PipelineError(f"{path}: {e}") from None
    problems += [Problem("undecodable", f"line {n}", "neither UTF-8 nor GBK") for n in undecodable]
    return encoding, container, items, problems


# --- containers ---------------------------------------------------------------------------------


def _text_items(text: str, container: str = "auto") -> tuple[str, list[tuple[str, object]], list[Problem]]:
    """(container, [(location, object)], problems of the container itself, such as bad JSON lines)."""
    body = text.lstrip("\ufeff \t\r\n")
    if container == "jsonl":
        return ("jsonl", *_json_lines(text))
    if container == "markdown":
        return "markdown", _markdown_items(text), []
    if container in ("csv", "tsv"):
        return container, _csv_items(text, "\t" if container == "tsv" else ","), []
    if not body.strip("\x00"):
        raise PipelineError("the file is empty; give a file with records, or remove it from the source")
    if container == "json" or body.startswith(("[", "{")):
        try:
            whole = json.loads(body)
        except (ValueError, RecursionError):  # not one JSON value, or nested deeper than the parser's stack: by line
            whole = None
        if isinstance(whole, list):
            return "json", [(f"item {i}", obj) for i, obj in enumerate(whole)], []
        if isinstance(whole, dict) and "\n" in body.strip():
            return "json", [("item 0", whole)], []
        return ("jsonl", *_json_lines(text))
    if any(_MD_QUESTION.match(line) for line in body.split("\n")[:50]):
        return "markdown", _markdown_items(text), []
    first = body.split("\n", 1)[0]
    if "\t" in first or "," in first:
        delimiter = "\t" if first.count("\t") > first.count(",") else ","
        return ("tsv" if delimiter == "\t" else "csv"), _csv_items(text, delimiter), []
    raise PipelineError("cannot tell the format: not JSON, JSON Lines, CSV/TSV, Parquet or Markdown Q&A; "
                        "convert it to JSON Lines of {\"question\": ..., \"answer\": ...}")


def _json_lines(text: str) -> tuple[list[tuple[str, object]], list[Problem]]:
    # Split on \n only: str.splitlines() also splits on U+2028 and other separators that JSON
    # strings may carry raw.
    items, problems = [], []
    for n, line in enumerate(text.split("\n"), 1):
        line = line.lstrip("\ufeff")  # a byte-order mark where two files were concatenated
        if not line.strip():
            continue
        try:
            items.append((f"line {n}", json.loads(line)))
        except json.JSONDecodeError as e:
            problems.append(Problem("not_json", f"line {n}", f"{e.msg}: {line.strip()[:EXCERPT_CHARS]}"))
        except ValueError as e:  # e.g. an integer of more digits than Python converts
            problems.append(Problem("not_json", f"line {n}", f"{str(e)[:60]}: {line.strip()[:EXCERPT_CHARS]}"))
        except RecursionError:
            problems.append(Problem("nested_too_deeply", f"line {n}", line.strip()[:EXCERPT_CHARS]))
    return items, problems


def _csv_items(text: str, delimiter: str) -> list[tuple[str, object]]:
    # A long answer is one field: the csv module's default cap (128 KiB) would stop the file at the
    # first long one. Length limits are preprocess's business, where they are counted.
    csv.field_size_limit(sys.maxsize)
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""), delimiter=delimiter)
    items, start = [], 2
    for row in reader:
        items.append((f"line {start}", {k.strip(): v for k, v in row.items() if k is not None}))
        start = reader.line_num + 1  # a quoted field may span several lines
    return items


def _parquet_items(path: Path) -> list[tuple[str, object]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise PipelineError(f"{path} starts like Parquet but cannot be read ({str(e).splitlines()[0][:160]}); "
                            "it may be truncated: download it again, or convert it to JSON Lines") from None
    return [(f"row {i}", row) for i, row in enumerate(table.to_pylist())]


def _markdown_items(text: str) -> list[tuple[str, object]]:
    """`Q: …` / `A: …` pairs, or `### Q1: …` headers each followed by `A1: …`; an answer runs on
    until the next question."""
    items, question, answer, start = [], None, None, 0

    def flush():
        if question is not None:
            items.append((f"line {start}", {"question": "\n".join(question), "answer": "\n".join(answer or [])}))

    for n, line in enumerate(text.split("\n"), 1):
        if m := _MD_QUESTION.match(line):
            flush()
            question, answer, start = [m.group(1)], None, n
        elif (m := _MD_ANSWER.match(line)) and question is not None and answer is None:
            answer = [m.group(1)]
        elif question is not None:
            (answer if answer is not None else question).append(line)
    flush()
    return items


# --- shapes -------------------------------------------------------------------------------------


def to_turns(obj, fields: dict | None = None) -> list[tuple[str, str]]:
    """The (question, answer) turns of one item, the example last. Raises ShapeError."""
    if not isinstance(obj, dict):
        raise ShapeError("not_an_object", type(obj).__name__)
    fields = fields or {}
    obj = _known_keys(obj)
    if fields.get("question"):
        turns = _history(obj.get(fields["history"])) if fields.get("history") else []
        turns.append((text_of(obj.get(fields["question"])), text_of(obj.get(fields["answer"]))))
    elif isinstance(obj.get("conversations"), list):
        turns = _dialogue([(_role(m, "from"), m.get("value")) for m in obj["conversations"] if isinstance(m, dict)])
    elif isinstance(obj.get("messages"), list):
        turns = _dialogue([(_role(m, "role"), m.get("content")) for m in obj["messages"] if isinstance(m, dict)])
    elif isinstance(obj.get("data"), list):
        turns = _prefixed_dialogue(obj["data"])
    elif "instruction" in obj and "output" in obj:
        question = "\n".join(t for t in (text_of(obj["instruction"]), text_of(obj.get("input"))) if t)
        turns = _history(obj.get("history")) + [(question, text_of(obj["output"]))]
    elif "query" in obj and "response" in obj:
        turns = _history(obj.get("history")) + [(text_of(obj["query"]), text_of(obj["response"]))]
    elif ("ask" in obj or "title" in obj) and "answer" in obj:
        title, ask = text_of(obj.get("title")), text_of(obj.get("ask"))
        question = ask if not title or title in ask else (title if not ask or ask in title else f"{title}\n{ask}")
        turns = [(question, text_of(obj["answer"]))]
    else:
        q_key = next((k for k in QUESTION_KEYS if k in obj), None)
        a_key = next((k for k in ANSWER_KEYS if k in obj), None)
        if q_key is None or a_key is None:
            raise ShapeError("unknown_shape", f"keys {sorted(map(str, obj))[:8]}")
        turns = [(text_of(obj[q_key]), text_of(obj[a_key]))]
    if not turns:
        raise ShapeError("no_turns")
    question, answer = turns[-1]
    if not question:
        raise ShapeError("empty_question")
    if not answer:
        raise ShapeError("empty_answer")
    return turns


def _known_keys(obj: dict) -> dict:
    """`obj` with each key of KEY_ALIASES renamed to the key it means, unless the item also spells
    that key itself."""
    if not any(str(k) in KEY_ALIASES for k in obj):
        return obj
    return {(KEY_ALIASES[k] if k in KEY_ALIASES and KEY_ALIASES[k] not in obj else k): v for k, v in obj.items()}


def suggest_fields(keys: list[str]) -> dict:
    """{question: key, answer: key} guessed from key names, for a message only; {} when unsure."""
    def pick(hints, exclude=None):
        for hint in hints:
            for key in keys:
                if key != exclude and hint in str(key).lower():
                    return key
        return None

    answer = pick(_ANSWER_HINTS)
    question = pick(_QUESTION_HINTS, exclude=answer)
    return {"question": question, "answer": answer} if question and answer else {}


def department_of(obj, key: str | None = None) -> dict:
    """{"department": ...} where an item names its hospital department (under `key`, or one of
    DEPARTMENT_KEYS), else {}."""
    if isinstance(obj, dict):
        for key in (key,) if key else DEPARTMENT_KEYS:
            if text_of(obj.get(key)):
                return {"department": text_of(obj[key])}
    return {}


def text_of(value) -> str:
    """A field's text: single-element (or nested) lists unwrap; of several values, the first
    (question lists hold paraphrases of one question)."""
    while isinstance(value, list) and value:
        value = value[0]
    if value is None or isinstance(value, list):
        return ""
    return str(value).strip()


def _role(message: dict, key: str) -> str:
    role = str(message.get(key, "")).lower()
    return "user" if role in USER_ROLES else "assistant" if role in ASSISTANT_ROLES else role


def _dialogue(messages: list[tuple[str, object]]) -> list[tuple[str, str]]:
    """Turns from role-tagged messages; system messages are dropped, and a dialogue that ends on
    the user's message has no final answer to learn."""
    messages = [(role, text_of(text)) for role, text in messages if role in ("user", "assistant")]
    if messages and messages[-1][0] == "user":
        raise ShapeError("no_final_answer")
    turns, question = [], None
    for role, text in messages:
        if role == "user":
            question = text if question is None else f"{question}\n{text}"
        elif question is not None:
            turns.append((question, text))
            question = None
        elif turns:  # two assistant messages in a row: one answer
            turns[-1] = (turns[-1][0], f"{turns[-1][1]}\n{text}")
    return turns


def _prefixed_dialogue(lines: list) -> list[tuple[str, str]]:
    """["问：…", "答：…", …]: the prefix tells who speaks."""
    messages = []
    for line in lines:
        m = _DIALOGUE_PREFIX.match(str(line))
        if not m:
            raise ShapeError("unknown_speaker", str(line)[:EXCERPT_CHARS])
        messages.append(("user" if m.group(1) in ("问", "病人", "患者") else "assistant", str(line)[m.end():]))
    return _dialogue(messages)


def _history(history) -> list[tuple[str, str]]:
    """[[q, a], …] as Alpaca and query/response sets give earlier turns."""
    if not isinstance(history, list):
        return []
    return [(text_of(pair[0]), text_of(pair[1])) for pair in history if isinstance(pair, (list, tuple)) and len(pair) == 2]


def excerpt(obj) -> str:
    try:
        text = json.dumps(obj, ensure_ascii=False, default=str) if not isinstance(obj, str) else obj
    except RecursionError:
        text = f"<{type(obj).__name__} nested too deeply to show>"
    return text[:EXCERPT_CHARS]
