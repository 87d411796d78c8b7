"""Every reader driven with generated malformed files (hypothesis, derandomized: the same inputs on
every run). Each input must end in records, counted problems, or one PipelineError that names the
file; any other exception is a traceback a user would have seen.

Readers: medqa_scale.data.formats.read_file (data sources) and
medqa_scale.data.choices.read_choice_file (benchmarks), each with the container detected and with
every container forced.

Run: python -m pytest tests/test_formats_fuzz.py -q
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medqa_scale.core.cli import PipelineError
from medqa_scale.data.choices import read_choice_file
from medqa_scale.data.formats import CONTAINERS, read_file

EXAMPLES = 500  # per reader and strategy: the floor for the fast tier
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

QA = [{"question": "头痛三天了怎么办？", "answer": "建议多休息，持续不缓解请就医。"},
      {"question": "发热", "answer": "多喝水", "history": [["你好", "请讲"]]}]
CHOICE = [{"question": "成人正常体温约为", "A": "35℃", "B": "37℃", "C": "39℃", "D": "41℃", "answer": "B"}]


def _parquet(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


VALID = {
    "json": json.dumps(QA, ensure_ascii=False).encode(),
    "jsonl": "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in QA + CHOICE).encode(),
    "csv": "question,answer,A,B\n头痛怎么办,\"多休息,\n必要时就医\",1,2\n发热,多喝水,3,4\n".encode(),
    "tsv": "question\tanswer\n头痛怎么办\t多休息\n".encode(),
    "markdown": "### Q1: 头痛怎么办？\nA1: 多休息。\n\nQ: 发热？\nA: 多喝水。\n".encode(),
    "gbk": "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in QA).encode("gbk"),
    "parquet": _parquet(QA),
}

READERS = {"read_file": lambda path, container: read_file(path, container=container),
           "read_choice_file": lambda path, container: read_choice_file(path, container)}


def outcome(reader: str, path: Path, container: str = "auto") -> str:
    """'read' or 'refused'; anything else fails the test with the input's traceback."""
    try:
        result = READERS[reader](path, container)
    except PipelineError as e:
        assert str(path) in str(e), f"the message does not name the file: {e}"
        assert "\n" not in str(e).strip() and "Traceback" not in str(e)
        return "refused"
    if reader == "read_file":
        assert result.items == len(result.conversations) + len(result.problems)
        for c in result.conversations:  # what is kept is usable text
            assert all(isinstance(q, str) and isinstance(a, str) for q, a in c["turns"]) and all(c["turns"][-1])
        assert all(p.reason and p.location for p in result.problems)
    else:
        _, _, items, problems = result
        assert all(loc and set(item) >= {"question", "options", "answer"} for loc, item in items)
        assert all(p.reason and p.location for p in problems)
    return "read"


@pytest.fixture
def file(tmp_path):
    def write(data: bytes, name: str = "input.bin") -> Path:
        path = tmp_path / name
        path.write_bytes(data)
        return path
    return write


@pytest.mark.parametrize("reader", READERS)
@FUZZ
@given(data=st.binary(max_size=2048), container=st.sampled_from(("auto", *CONTAINERS)))
def test_random_bytes(file, reader, data, container):
    outcome(reader, file(data), container)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("kind", VALID)
def test_truncation_at_every_position(file, reader, kind):
    whole = VALID[kind]
    outcomes = {outcome(reader, file(whole[:n]), "auto") for n in range(len(whole) + 1)}
    assert outcomes <= {"read", "refused"}


@pytest.mark.parametrize("reader", READERS)
@FUZZ
@given(kind=st.sampled_from(sorted(VALID)),
       edits=st.lists(st.tuples(st.integers(min_value=0), st.sampled_from([
           b"\x00", b"\x01", b"\x1b", b"\x7f", b"\xef\xbb\xbf", b"\r", b"\n", b'"', b",", b"\t", b"[", b"{", b"}",
           b"\xff", b"\xc3", "\u2028".encode(), "\ufffe".encode(), "头".encode("gbk")])), max_size=8))
def test_control_characters_bytes_and_marks_inserted(file, reader, kind, edits):
    data = bytearray(VALID[kind])
    for position, piece in edits:
        at = position % (len(data) + 1)
        data[at:at] = piece
    outcome(reader, file(bytes(data)))


@pytest.mark.parametrize("reader", READERS)
@FUZZ
@given(depth=st.integers(min_value=1, max_value=200_000), opener=st.sampled_from(["[", '{"a":', '[{"q":']),
       closed=st.booleans(), lines=st.integers(min_value=1, max_value=3))
def test_deep_nesting(file, reader, depth, opener, closed, lines):
    closer = {"[": "]", '{"a":': "}", '[{"q":': "}]"}[opener]
    one = opener * depth + ("1" + closer * depth if closed else "")
    outcome(reader, file("\n".join([one] * lines).encode()))


@pytest.mark.parametrize("reader", READERS)
@FUZZ
@given(rows=st.lists(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=12), max_size=6), max_size=8),
       delimiter=st.sampled_from([",", "\t"]), huge=st.sampled_from([0, 200_000]))
def test_ragged_csv_and_enormous_fields(file, reader, rows, delimiter, huge):
    header = delimiter.join(["question", "answer", "A", "B"])
    body = "\n".join(delimiter.join(row) for row in rows)
    big = ("病" * huge) if huge else ""
    text = f"{header}\n{body}\n问题{big}{delimiter}回答{big}\n"
    outcome(reader, file(text.encode()))


@pytest.mark.parametrize("reader", READERS)
@FUZZ
@given(lines=st.lists(st.tuples(st.sampled_from(QA + CHOICE),
                                st.sampled_from(["utf-8", "gbk", "utf-8-sig", "garbage"])), min_size=1, max_size=12))
def test_encodings_mixed_line_by_line(file, reader, lines):
    out = []
    for obj, encoding in lines:
        text = json.dumps(obj, ensure_ascii=False)
        out.append(b"\xff\xfe\xfa" + text.encode("utf-8")[:5] if encoding == "garbage" else text.encode(encoding))
    outcome(reader, file(b"\n".join(out) + b"\n"))


def test_a_file_mixing_utf8_and_gbk_lines_is_read_line_by_line_and_bad_lines_counted(file):
    lines = [json.dumps(QA[0], ensure_ascii=False).encode("utf-8"), json.dumps(QA[1], ensure_ascii=False).encode("gbk"),
             b"\xff\xfe\xfa not text", json.dumps(QA[0], ensure_ascii=False).encode("utf-8")]
    result = read_file(file(b"\n".join(lines) + b"\n"))
    assert result.encoding == "mixed:gb18030+utf-8"
    assert [c["turns"][-1][0] for c in result.conversations] == [QA[0]["question"], QA[1]["question"], QA[0]["question"]]
    assert [(p.reason, p.location) for p in result.problems] == [("undecodable", "line 3")]


def test_a_mostly_undecodable_file_is_refused_with_one_message(file):
    path = file(b"\xff\xfe\xfa\n\x81\xff\n\xff\n" + json.dumps(QA[0]).encode() + b"\n")
    with pytest.raises(PipelineError, match="neither UTF-8 nor GBK/GB18030 .3 of 5 lines.*iconv"):
        read_file(path)


def test_deeply_nested_json_is_a_counted_skip_and_truncated_parquet_a_message(file):
    result = read_file(file(b"[" * 100_000, "nested.json"))
    assert not result.conversations and [(p.reason, p.location) for p in result.problems] == [("nested_too_deeply", "line 1")]
    with pytest.raises(PipelineError, match="starts like Parquet but cannot be read.*truncated"):
        read_file(file(VALID["parquet"][:-20], "cut.parquet"))
    with pytest.raises(PipelineError, match="the file is empty"):
        read_file(file(b"", "empty.csv"))
