"""medqa_scale.data.formats: every container, encoding and record shape, from small fixture files this
test writes itself; nothing that cannot be read is lost without a reason and a location.

Run: python -m pytest tests/test_formats.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medqa_scale.core.cli import PipelineError
from medqa_scale.data.formats import ShapeError, decode, read_file, to_turns

Q, A = "头痛三天了怎么办？", "建议多休息，持续不缓解请就医。"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def jsonl(objs) -> str:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs)


def examples(result) -> list[tuple[str, str]]:
    return [c["turns"][-1] for c in result.conversations]


# --- encodings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding,name", [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("gbk", "gb18030"),
                                           ("gb18030", "gb18030")])
def test_every_encoding_is_detected_and_decoded(tmp_path, encoding, name):
    path = write(tmp_path / "qa.jsonl", jsonl([{"question": Q, "answer": A}]), encoding)
    result = read_file(path)
    assert result.encoding == name and examples(result) == [(Q, A)]


def test_a_gb18030_only_character_decodes():
    text = "𠀀病" + Q  # U+20000 is outside GBK
    assert decode(text.encode("gb18030")) == (text, "gb18030")


def test_bytes_in_no_supported_encoding_raise_one_clear_error(tmp_path):
    path = tmp_path / "qa.txt"
    path.write_bytes(b"\x81\x30\xff\xff\x00")
    with pytest.raises(PipelineError, match="iconv"):
        read_file(path)


# --- containers ---------------------------------------------------------------------------------


def test_json_array(tmp_path):
    path = write(tmp_path / "qa.json", json.dumps([{"question": Q, "answer": A}, {"question": "咳嗽？", "answer": "多喝水。"}],
                                                 ensure_ascii=False))
    result = read_file(path)
    assert result.container == "json" and examples(result) == [(Q, A), ("咳嗽？", "多喝水。")]
    assert [c["location"] for c in result.conversations] == ["item 0", "item 1"]


def test_a_json_file_that_is_really_json_lines(tmp_path):
    path = write(tmp_path / "qa.json", jsonl([{"question": Q, "answer": A}, {"question": "咳嗽？", "answer": "多喝水。"}]))
    result = read_file(path)
    assert result.container == "jsonl" and len(result.conversations) == 2 and not result.problems


def test_json_lines_named_txt(tmp_path):
    result = read_file(write(tmp_path / "qa.txt", jsonl([{"question": Q, "answer": A}])))
    assert result.container == "jsonl" and examples(result) == [(Q, A)]


def test_1000_lines_with_10_malformed_give_990_records_and_name_each_line(tmp_path):
    lines = []
    bad = {7, 99, 150, 333, 400, 512, 640, 777, 901, 1000}
    for n in range(1, 1001):
        if n in bad:
            lines.append('{"question": "坏行' + str(n) if n % 2 else '{"question": "缺答案"}')
        else:
            lines.append(json.dumps({"question": f"问题{n}", "answer": f"回答{n}"}, ensure_ascii=False))
    result = read_file(write(tmp_path / "qa.jsonl", "\n".join(lines) + "\n"))
    assert len(result.conversations) == 990
    assert sorted(int(p.location.split()[1]) for p in result.problems) == sorted(bad)
    reasons = {int(p.location.split()[1]): p.reason for p in result.problems}
    assert {reasons[n] for n in bad if n % 2} == {"not_json"}
    assert {reasons[n] for n in bad if not n % 2} == {"unknown_shape"}
    assert result.items == 1000


def test_gb18030_csv_with_quoted_multiline_fields_and_a_stray_quote(tmp_path):
    text = ('department,title,ask,answer\r\n'
            '内科,偏头痛,"头痛三天，\r\n伴有恶心",建议就医\r\n'
            '外科,膝盖 5" 的伤口,伤口怎么护理？,"保持干燥，\r\n按时换药"\r\n')
    result = read_file(write(tmp_path / "qa.csv", text, "gb18030"))
    assert result.encoding == "gb18030" and result.container == "csv"
    assert examples(result) == [("偏头痛\n头痛三天，\r\n伴有恶心", "建议就医"),
                                ('膝盖 5" 的伤口\n伤口怎么护理？', "保持干燥，\r\n按时换药")]
    assert [c["location"] for c in result.conversations] == ["line 2", "line 4"]


def test_tsv(tmp_path):
    result = read_file(write(tmp_path / "qa.tsv", f"问\t答\n{Q}\t{A}\n"))
    assert result.container == "tsv" and examples(result) == [(Q, A)]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "qa.bin"  # the name says nothing; the content does
    pq.write_table(pa.table({"query": [Q, "咳嗽？"], "response": [A, ""]}), path)
    result = read_file(path)
    assert result.container == "parquet" and examples(result) == [(Q, A)]
    assert [(p.reason, p.location) for p in result.problems] == [("empty_answer", "row 1")]


def test_markdown_q_and_a_pairs(tmp_path):
    text = f"# 常见问题\n\nQ: {Q}\nA: {A}\n第二行回答。\n\nQ：咳嗽？\nA：多喝水。\n"
    result = read_file(write(tmp_path / "faq.md", text))
    assert result.container == "markdown"
    assert examples(result) == [(Q, f"{A}\n第二行回答。"), ("咳嗽？", "多喝水。")]


def test_markdown_numbered_headers(tmp_path):
    text = f"### Q1: {Q}\nA1: {A}\n\n### Q2: 咳嗽？\nA2: 多喝水。\n"
    result = read_file(write(tmp_path / "faq.txt", text))
    assert examples(result) == [(Q, A), ("咳嗽？", "多喝水。")]
    assert [c["location"] for c in result.conversations] == ["line 1", "line 4"]


def test_text_in_no_known_container_is_refused(tmp_path):
    with pytest.raises(PipelineError, match="cannot tell the format"):
        read_file(write(tmp_path / "notes.txt", "just some words\nand more words\n"))


# --- shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("obj,turns", [
    ({"instruction": Q, "input": "", "output": A}, [(Q, A)]),
    ({"instruction": "回答问题", "input": Q, "output": A}, [(f"回答问题\n{Q}", A)]),
    ({"conversations": [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好，请讲。"},
                        {"from": "human", "value": Q}, {"from": "gpt", "value": A}]},
     [("你好", "你好，请讲。"), (Q, A)]),
    ({"messages": [{"role": "system", "content": "你是医生"}, {"role": "user", "content": Q},
                   {"role": "assistant", "content": A}]}, [(Q, A)]),
    ({"query": Q, "response": A, "history": [["你好", "你好，请讲。"]]}, [("你好", "你好，请讲。"), (Q, A)]),
    ({"question": Q, "answer": A}, [(Q, A)]),
    ({"questions": [[Q, "头痛怎么办"]], "answers": [A]}, [(Q, A)]),
    ({"question": [Q], "answer": [A]}, [(Q, A)]),
    ({"问": Q, "答": A}, [(Q, A)]),
    ({"问题": Q, "回答": A}, [(Q, A)]),
    ({"data": ["问：你好", "答：你好，请讲。", f"问：{Q}", f"答：{A}"]}, [("你好", "你好，请讲。"), (Q, A)]),
    ({"department": "内科", "title": "偏头痛求助", "ask": Q, "answer": A}, [(f"偏头痛求助\n{Q}", A)]),
    ({"department": "内科", "title": Q, "ask": "", "answer": A}, [(Q, A)]),
    ({"department": "内科", "title": "头痛", "ask": f"头痛，{Q}", "answer": A}, [(f"头痛，{Q}", A)]),
])
def test_every_record_shape(obj, turns):
    assert to_turns(obj) == turns


def test_one_file_mixing_two_spellings_of_a_key(tmp_path):
    path = write(tmp_path / "qa.jsonl", jsonl([{"question": Q, "answer": A}, {"Question": "x", "Answer": "y"},
                                                {"问题": "咳嗽？", "回答": "多喝水。"}, {"question": "发热？", "answers": ["退热。"]}]))
    result = read_file(path)
    assert examples(result) == [(Q, A), ("咳嗽？", "多喝水。"), ("发热？", "退热。")]
    assert [(p.reason, p.location) for p in result.problems] == [("unknown_shape", "line 2")]
    assert "Answer" in result.problems[0].excerpt


def test_a_field_mapping_overrides_detection(tmp_path):
    path = write(tmp_path / "qa.jsonl", jsonl([{"患者提问": Q, "医生回复": A, "question": "decoy", "answer": "decoy"}]))
    result = read_file(path, fields={"question": "患者提问", "answer": "医生回复"})
    assert examples(result) == [(Q, A)]


def test_a_field_mapping_may_name_only_the_department(tmp_path):
    path = write(tmp_path / "qa.jsonl", jsonl([{"question": Q, "answer": A, "label": "内科", "department": "decoy"}]))
    result = read_file(path, fields={"department": "label"})
    assert examples(result) == [(Q, A)] and result.conversations[0]["department"] == "内科"


@pytest.mark.parametrize("obj,reason", [
    (["not", "a", "dict"], "not_an_object"),
    ({"title": "x"}, "unknown_shape"),
    ({"question": " ", "answer": A}, "empty_question"),
    ({"question": Q, "answer": []}, "empty_answer"),
    ({"messages": [{"role": "user", "content": Q}]}, "no_final_answer"),
    ({"data": ["你好", "答：好"]}, "unknown_speaker"),
])
def test_what_is_no_conversation_raises_with_its_reason(obj, reason):
    with pytest.raises(ShapeError) as err:
        to_turns(obj)
    assert err.value.reason == reason


@pytest.mark.parametrize("question", ["头痛\u2028怎么办？", "咳嗽\u0085怎么办？", "发热\x1c怎么办？"])
def test_json_lines_split_on_newlines_only(tmp_path, question):
    # str.splitlines() would also split on U+2028, NEL and the other separators JSON strings may carry.
    result = read_file(write(tmp_path / "qa.jsonl", jsonl([{"question": question, "answer": A}]) * 2))
    assert examples(result) == [(question, A)] * 2 and not result.problems


@pytest.mark.parametrize("layout, obj, turns", [
    # Multi-turn consultation dumps (instruct/input/output/history), as one public file spells its 144
    # single-turn records beside the rest of its dialogues.
    ("instruct", {"instruct": "头痛怎么办？", "input": "", "output": "多休息。", "history": [["你好", "请讲。"]]},
     [("你好", "请讲。"), ("头痛怎么办？", "多休息。")]),
    # OpenAI's legacy fine-tuning JSON Lines: {"prompt": ..., "completion": ...}.
    ("prompt/completion", {"prompt": "头痛怎么办？", "completion": "多休息。"}, [("头痛怎么办？", "多休息。")]),
])
def test_near_spellings_that_real_files_use_are_read(layout, obj, turns):
    assert to_turns(obj) == turns


def test_an_unknown_shape_gets_its_keys_and_the_fields_line_that_reads_it(tmp_path):
    from medqa_scale.data.sources import read_source

    folder = tmp_path / "src"
    folder.mkdir()
    write(folder / "cases.jsonl", jsonl([{"medical_case": Q, "doctor_diagnosis": A, "Department": "内科"}] * 3))
    source = {"name": "cases", "path": str(folder)}
    read = read_source(source, tmp_path / "work", seed=0)
    assert not read.records and {p["reason"] for p in read.problems} == {"unknown_shape"}
    from stages.download_data import check

    with pytest.raises(PipelineError) as e:
        check([read], 0.5)
    assert "keys ['Department', 'doctor_diagnosis', 'medical_case']" in str(e.value)
    assert "fields: {question: medical_case, answer: doctor_diagnosis}" in str(e.value)
    fixed = read_source({**source, "fields": {"question": "medical_case", "answer": "doctor_diagnosis"}}, tmp_path / "w2", 0)
    assert [(r["question"], r["answer"]) for r in fixed.records] == [(Q, A)] * 3
