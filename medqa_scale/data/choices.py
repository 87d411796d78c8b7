"""Multiple-choice exam sets (benchmarks) read by content, in the layouts they are published in, into
items {"question", "options": {"A": text, ...}, "answer": ["A", ...] or None, ...}; every item that
cannot be read is counted by reason and listed with its file and line, as data sources are.

Containers and encodings are those of medqa_scale.data.formats (JSON, JSON Lines, CSV/TSV, Parquet;
UTF-8 with or without BOM, GBK/GB18030; CRLF). Shapes, told apart per item:
  C-Eval, CMMLU  CSV rows with a question, A-D columns and an answer letter (C-Eval's dev files add an
                 explanation; its test files have no answer column: those items are unlabelled)
  MedQA          JSON Lines with an options mapping and the answer as a letter (answer_idx) or as the
                 option's text
  CMB            a JSON array with an `option` mapping, up to five options, answers such as "ACD"
  CMExam         CSV whose Options column holds all options in one string ("A 发热\\nB 咳嗽 ...")
  MedMCQA-style  records with opa ... ope and cop, the correct option's 1-based number (the
                 `answer_index_base` of the set changes that)
  Chinese heads  题目/问题/题干, 选项A ... or A ..., 答案, 解析

An item whose answer is missing or empty is kept and marked unlabelled (answer None); an item with
several answer letters is kept with all of them (`multiple`), and the scorer decides, by param,
whether it counts by exact set match or is set aside.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from medqa_scale.core.params import source_kind, source_name
from medqa_scale.data.formats import Problem, ShapeError, excerpt, read_items, text_of
from medqa_scale.data.sources import fetch

log = logging.getLogger(__name__)

LETTERS = "ABCDEFGH"
QUESTION_KEYS = ("question", "Question", "题目", "问题", "题干", "stem")
OPTION_KEYS = ("options", "option", "Options", "choices", "选项")
ANSWER_KEYS = ("answer_idx", "answer", "Answer", "答案", "cop", "label", "correct")  # answer_idx first: MedQA also has the text
EXPLANATION_KEYS = ("explanation", "Explanation", "解析", "exp")
SUBJECT_KEYS = ("subject", "exam_subject", "subject_name", "科目")
# An option's letter in one string of options: at the start or after a space or a separator, then
# a mark (". 、 : ) ．") or a space; letters must come in order, so a capital inside a text is no letter.
_OPTION_MARK = r"(?:^|(?<=[\s;；,，]))[（(]?{letter}\s*(?:[.．、:：)）]\s*|\s+)"
_LETTER_LIST = re.compile(r"^[\s\[\]'\"A-H,，、;；/和及]*$")


@dataclass
class ChoiceRead:
    """One benchmark set: its items, what was left out, and per file how it was read."""

    name: str
    kind: str
    provenance: dict
    items: list[dict] = field(default_factory=list)
    problems: list[dict] = field(default_factory=list)  # {"reason", "file", "location", "excerpt"}
    files: dict[str, dict] = field(default_factory=dict)

    def summary(self) -> dict:
        labelled = [i for i in self.items if i["answer"] is not None]
        return {"kind": self.kind, "provenance": self.provenance, "files": self.files, "items": len(self.items),
                "labelled": len(labelled), "unlabelled": len(self.items) - len(labelled),
                "multiple_answer": sum(len(i["answer"]) > 1 for i in labelled),
                "skipped": dict(sorted(Counter(p["reason"] for p in self.problems).items())),
                "skipped_total": len(self.problems)}


def read_benchmark(spec: dict, workdir: Path, seed: int = 0) -> ChoiceRead:
    """Fetch a `benchmarks:` entry's source (path, url, hf, modelscope: as data.sources) into
    `workdir`, an empty scratch directory, and read every file of it; builtin sets are drawn from `seed`."""
    kind, name = source_kind(spec), source_name(spec)
    if kind == "builtin":
        return _read_builtin(name, spec["builtin"], seed)
    files, provenance = fetch(spec, workdir)
    result = ChoiceRead(name, kind, provenance)
    base = int(spec.get("answer_index_base", 1))
    for rel, path in files:
        encoding, container, read, problems = read_choice_file(path, spec.get("format", "auto"), base)
        items = [{"id": f"{name}:{rel}:{location.replace(' ', '')}", "origin": {"file": rel, "location": location}, **item}
                 for location, item in read]
        result.items += items
        result.problems += [{"reason": p.reason, "file": rel, "location": p.location, "excerpt": p.excerpt} for p in problems]
        result.files[rel] = {"encoding": encoding, "container": container, "items": len(items) + len(problems),
                             "read": len(items), "unlabelled": sum(i["answer"] is None for i in items)}
        log.info("benchmark %s: %s is %s %s, %d items (%d unlabelled), %d left out", name, rel, encoding, container,
                 len(items), result.files[rel]["unlabelled"], len(problems))
    return result


def read_choice_file(path: Path, container: str = "auto", answer_index_base: int = 1
                     ) -> tuple[str, str, list[tuple[str, dict]], list[Problem]]:
    """(encoding, container, [(location, item)], problems): every item of one file as a multiple-choice
    question (to_choice), or as a problem with its reason and location."""
    encoding, container, raw, problems = read_items(path, container)
    problems, items = [*problems], []
    for location, obj in raw:
        try:
            items.append((location, to_choice(obj, answer_index_base)))
        except ShapeError as e:
            problems.append(Problem(e.reason, location, excerpt(obj)))
    return encoding, container, items, problems


def _read_builtin(name: str, which: str, seed: int) -> ChoiceRead:
    from medqa_scale.builtin.exams import domain_items, retention_items

    items = (domain_items if which == "domain" else retention_items)(seed)
    result = ChoiceRead(name, "builtin", {"source": "builtin", "generator": "medqa_scale/builtin/exams.py", "set": which,
                                          "seed": seed})
    result.items = [{**item, "id": f"{name}:{item['origin']['file']}:{item['origin']['location'].replace(' ', '')}"}
                    for item in items]
    for file in sorted({i["origin"]["file"] for i in items}):
        n = sum(i["origin"]["file"] == file for i in items)
        result.files[file] = {"encoding": "utf-8", "container": "builtin", "items": n, "read": n, "unlabelled": 0}
    return result


def to_choice(obj, answer_index_base: int = 1) -> dict:
    """One item's question, options by letter, answer letters (None when unlabelled), and its
    explanation and subject where it has them. Raises ShapeError."""
    if not isinstance(obj, dict):
        raise ShapeError("not_an_object", type(obj).__name__)
    obj = {str(k).strip(): v for k, v in obj.items()}
    question = text_of(next((obj[k] for k in QUESTION_KEYS if k in obj), None))
    if not question:
        raise ShapeError("no_question")
    options = _options(obj)
    if len(options) < 2:
        raise ShapeError("too_few_options", f"{len(options)} option(s) found")
    item = {"question": question, "options": options, "answer": _answer(obj, options, answer_index_base)}
    for out, keys in (("explanation", EXPLANATION_KEYS), ("subject", SUBJECT_KEYS)):
        value = text_of(next((obj[k] for k in keys if k in obj), None))
        if value:
            item[out] = value
    return item


def _options(obj: dict) -> dict[str, str]:
    for key in OPTION_KEYS:
        value = obj.get(key)
        if isinstance(value, dict):
            return _no_gaps({str(k).strip().upper(): text_of(v) for k, v in value.items()})
        if isinstance(value, list):
            return _no_gaps({LETTERS[i]: _strip_letter(text_of(v), LETTERS[i]) for i, v in enumerate(value[:len(LETTERS)])})
        if isinstance(value, str) and value.strip():
            return split_options(value)
    for pattern in ("{}", "选项{}", "{}选项", "op{}"):
        keys = {letter: pattern.format(letter.lower() if pattern == "op{}" else letter) for letter in LETTERS}
        if keys["A"] in obj and keys["B"] in obj:
            return _no_gaps({letter: text_of(obj.get(key)) for letter, key in keys.items() if key in obj})
    return {}


def _no_gaps(options: dict[str, str]) -> dict[str, str]:
    """Options without the empty ones at the end (a 5-column file holds 4-option items too); an
    empty option before a filled one is a broken item, not an option to drop."""
    letters = sorted(options)
    while letters and not options[letters[-1]]:
        letters.pop()
    empty = [x for x in letters if not options[x]]
    if empty:
        raise ShapeError("empty_option", f"option {', '.join(empty)} is empty")
    return {x: options[x] for x in letters}


def split_options(text: str) -> dict[str, str]:
    """"A 发热\\nB 咳嗽" or "A. 发热 B. 咳嗽" or "(A)发热；(B)咳嗽" into {"A": "发热", "B": "咳嗽"}."""
    starts = []
    position = 0
    for letter in LETTERS:
        m = re.compile(_OPTION_MARK.format(letter=letter)).search(text, position)
        if not m:
            break
        starts.append((letter, m.start(), m.end()))
        position = m.end()
    options = {}
    for i, (letter, _, end) in enumerate(starts):
        stop = starts[i + 1][1] if i + 1 < len(starts) else len(text)
        options[letter] = text[end:stop].strip(" \t\r\n;；,，")
    return {k: v for k, v in options.items() if v}


def _strip_letter(text: str, letter: str) -> str:
    m = re.match(_OPTION_MARK.format(letter=letter), text)
    return text[m.end():].strip() if m else text


def _answer(obj: dict, options: dict[str, str], base: int) -> list[str] | None:
    key = next((k for k in ANSWER_KEYS if k in obj and text_of(obj[k]) != ""), None)
    if key is None:
        return None
    value = obj[key]
    if isinstance(value, list) and len(value) > 1:
        value = "".join(map(str, value))
    if isinstance(value, bool):
        raise ShapeError("bad_answer", repr(value))
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        index = int(value) - base
        if not 0 <= index < len(options):
            raise ShapeError("answer_not_an_option", f"option number {value} of {len(options)} (numbers start at {base})")
        return [sorted(options)[index]]
    text = text_of(value)
    if text in options.values():  # MedQA's answer as the option's text
        return [next(k for k, v in options.items() if v == text)]
    if _LETTER_LIST.match(text.upper()):
        letters = sorted(set(re.findall(r"[A-H]", text.upper())))
        if letters and all(x in options for x in letters):
            return letters
    raise ShapeError("answer_not_an_option", f"{text[:40]!r} is no option letter of {''.join(sorted(options))} and no option's text")
