"""Multiple-choice sets read by content (medqa_scale.data.choices): each fixture under
tests/fixtures/benchmarks/ is a file in a published layout (C-Eval dev and test, CMMLU, MedQA, CMB,
CMExam, a MedMCQA-style JSON array, a GBK CSV with Chinese headers), read through read_benchmark
from a `path:` entry under data/external/, as a user's `benchmarks:` entry is. Each holds malformed
items that must be counted and listed with their line, and nothing else may go missing.

Run: python -m pytest tests/test_choices.py -q
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from medqa_scale.data.choices import read_benchmark, split_options, to_choice
from medqa_scale.data.formats import ShapeError

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"

# file: (encoding, container, items read, unlabelled, {reason: [locations]})
EXPECTED = {
    "ceval_clinical_medicine_dev.csv": ("utf-8", "csv", 3, 0, {"empty_option": ["line 6"], "answer_not_an_option": ["line 7"]}),
    "ceval_clinical_medicine_test.csv": ("utf-8", "csv", 2, 2, {}),
    "cmmlu_high_school_geography.csv": ("utf-8-sig", "csv", 2, 0, {"no_question": ["line 4"]}),
    "medqa_mcmle_test.jsonl": ("utf-8", "jsonl", 3, 0, {"not_json": ["line 3"], "answer_not_an_option": ["line 5"]}),
    "CMB-test-choice-question-merge.json": ("utf-8", "json", 2, 0, {"too_few_options": ["item 2"]}),
    "cmexam_val.csv": ("utf-8", "csv", 2, 0, {"too_few_options": ["line 8"]}),
    "medmcqa_dev.json": ("utf-8", "json", 2, 0, {"answer_not_an_option": ["item 2"]}),
    "neike_chinese_headers.csv": ("gb18030", "csv", 3, 1, {}),
}


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    shutil.copytree(FIXTURES, tmp_path / "data/external/benchmarks")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def read(name: str, tmp_path: Path, **spec):
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return read_benchmark({"name": Path(name).stem, "role": "domain", "path": f"data/external/benchmarks/{name}", **spec}, scratch)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_layout_reads_fully_and_its_malformed_items_are_listed_with_their_line(workspace, name):
    encoding, container, n_read, unlabelled, problems = EXPECTED[name]
    result = read(name, workspace)
    assert result.files[name]["encoding"] == encoding and result.files[name]["container"] == container
    assert len(result.items) == n_read and sum(i["answer"] is None for i in result.items) == unlabelled
    listed: dict[str, list[str]] = {}
    for p in result.problems:
        assert p["file"] == name and p["excerpt"]
        listed.setdefault(p["reason"], []).append(p["location"])
    assert listed == problems
    assert result.files[name]["items"] == n_read + sum(map(len, problems.values()))  # nothing lost between the two
    summary = result.summary()
    assert summary["skipped_total"] == len(result.problems) and summary["unlabelled"] == unlabelled
    for item in result.items:
        assert item["question"] and len(item["options"]) >= 2 and all(item["options"].values())
        assert item["answer"] is None or set(item["answer"]) <= set(item["options"])
        assert item["id"].startswith(f"{Path(name).stem}:{name}:")


def test_the_items_carry_the_published_answers_options_and_explanations(workspace):
    ceval = read("ceval_clinical_medicine_dev.csv", workspace).items
    assert ceval[0]["answer"] == ["A"] and ceval[0]["explanation"].startswith("1. 胸痛") and "\n2. 发热" in ceval[0]["explanation"]
    assert ceval[1]["question"] == "维生素B12缺乏可引起" and ceval[1]["origin"]["location"] == "line 4"  # a quoted field spans line 3
    medqa = read("medqa_mcmle_test.jsonl", workspace).items
    assert [i["answer"] for i in medqa] == [["B"], ["B"], ["C"]]  # answer_idx, the option's text, a bare letter
    assert len(medqa[0]["options"]) == 5
    cmb = read("CMB-test-choice-question-merge.json", workspace)
    assert cmb.items[0]["answer"] == ["A", "C"] and cmb.items[0]["subject"] == "临床执业医师"
    assert cmb.summary()["multiple_answer"] == 1
    cmexam = read("cmexam_val.csv", workspace).items
    assert cmexam[0]["options"]["E"] == "抗结核治疗疗程为1周" and cmexam[1]["options"]["D"] == "维生素C"
    assert cmexam[1]["answer"] == ["A", "B", "C"]
    medmcqa = read("medmcqa_dev.json", workspace).items
    assert medmcqa[0]["answer"] == ["C"] and medmcqa[0]["subject"] == "Biochemistry"
    zh = read("neike_chinese_headers.csv", workspace).items
    assert zh[0]["options"]["A"] == "右下腹固定压痛" and zh[0]["explanation"] == "麦氏点压痛。" and zh[2]["answer"] is None


def test_a_directory_entry_reads_every_file_and_counts_per_file(workspace):
    result = read_benchmark({"name": "all", "path": "data/external/benchmarks"}, workspace)
    assert set(result.files) == set(EXPECTED)
    assert len(result.items) == sum(e[2] for e in EXPECTED.values())
    assert result.summary()["skipped"] == {"answer_not_an_option": 3, "empty_option": 1, "no_question": 1, "not_json": 1,
                                           "too_few_options": 2}


def test_a_zero_based_answer_number_is_read_when_the_set_says_so(workspace, tmp_path):
    path = workspace / "data/external/benchmarks/medmcqa_dev.json"
    path.write_text(path.read_text(encoding="utf-8").replace('"cop": 3', '"cop": 0'), encoding="utf-8")
    items = read("medmcqa_dev.json", workspace, answer_index_base=0).items
    assert items[0]["answer"] == ["A"] and items[1]["answer"] == ["C"]


@pytest.mark.parametrize("text, expected", [
    ("A 发热\nB 咳嗽\nC 乏力", {"A": "发热", "B": "咳嗽", "C": "乏力"}),
    ("A. 维生素B12 B. 叶酸 C. 铁剂", {"A": "维生素B12", "B": "叶酸", "C": "铁剂"}),
    ("(A)行B超检查；(B)行CT检查", {"A": "行B超检查", "B": "行CT检查"}),
    ("A、胸痛 B、发热 C、恶心 D、呕吐 E、晕厥", {"A": "胸痛", "B": "发热", "C": "恶心", "D": "呕吐", "E": "晕厥"}),
    ("A：是\r\nB：否", {"A": "是", "B": "否"}),
])
def test_options_in_one_string_split_at_their_letters_only(text, expected):
    assert split_options(text) == expected


@pytest.mark.parametrize("answer, expected", [("B", ["B"]), ("b", ["B"]), ("A,C", ["A", "C"]), ("A、C", ["A", "C"]),
                                              (["C", "A"], ["A", "C"]), ("CA", ["A", "C"]), (2, ["B"]), ("乙", ["B"]),
                                              ("", None), (None, None)])
def test_an_answer_is_a_letter_set_a_number_or_the_options_text(answer, expected):
    item = {"question": "问", "options": {"A": "甲", "B": "乙", "C": "丙"}, "answer": answer}
    assert to_choice(item)["answer"] == expected


@pytest.mark.parametrize("item, reason", [
    (["问", "甲"], "not_an_object"),
    ({"question": "  ", "A": "甲", "B": "乙", "answer": "A"}, "no_question"),
    ({"question": "问", "A": "甲", "answer": "A"}, "too_few_options"),
    ({"question": "问", "A": "甲", "B": "", "C": "丙", "answer": "A"}, "empty_option"),
    ({"question": "问", "A": "甲", "B": "乙", "answer": "D"}, "answer_not_an_option"),
    ({"question": "问", "A": "甲", "B": "乙", "answer": "丁"}, "answer_not_an_option"),
    ({"question": "问", "A": "甲", "B": "乙", "answer": 3}, "answer_not_an_option"),
])
def test_a_malformed_item_is_refused_with_its_reason(item, reason):
    with pytest.raises(ShapeError) as e:
        to_choice(item)
    assert e.value.reason == reason
