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


# --- the study's sets, from stand-ins of their hub repos at the pinned commits ---------------------


def _parquet(rows: list[dict]) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_the_study_sets_read_stand_ins_of_c_eval_and_cmmlu_at_their_pinned_commits(hub_env, tmp_path):
    # The layouts as published: C-Eval one parquet file per subject and split (its test answers
    # empty), CMMLU one zip with dev/ and test/ CSVs (BOM, an unnamed index column).
    from ruamel.yaml import YAML

    study = YAML(typ="safe", pure=True).load((Path(__file__).parents[1] / "conf/profile/study.yaml").read_text("utf-8"))
    sets = {s["name"]: s for s in study["benchmarks"]}
    row = {"id": 0, "question": "急性心肌梗死最早出现的症状是", "A": "胸痛", "B": "发热", "C": "恶心", "D": "心律失常",
           "answer": "A", "explanation": ""}
    ceval = {f"{subject}/{split}-00000-of-00001.parquet": _parquet([{**row, "answer": "" if split == "test" else "A"}] * 2)
             for subject in ("basic_medicine", "clinical_medicine", "physician", "law") for split in ("dev", "val", "test")}
    hub_env.add_commit("ceval/ceval-exam", {**ceval, "README.md": b"---\nlicense: cc-by-nc-sa-4.0\n---\n"},
                       repo_type="dataset", sha=sets["ceval-medicine"]["revision"])
    csv = "\ufeff,Question,A,B,C,D,Answer\n0,世界上面积最大的大洋是,大西洋,太平洋,印度洋,北冰洋,B\n1,,甲,乙,丙,丁,A\n"
    subjects = [Path(m).stem for s in ("cmmlu-medicine", "cmmlu-general") for m in sets[s]["members"]] + ["arts"]
    archive = _zip({f"{split}/{subject}.csv": csv.encode() for subject in subjects for split in ("dev", "test")})
    hub_env.add_commit("haonan-li/cmmlu", {"cmmlu_v1_0_1.zip": archive, "cmmlu.py": b"raise SystemExit\n"},
                       repo_type="dataset", sha=sets["cmmlu-medicine"]["revision"])
    assert sets["cmmlu-general"]["revision"] == sets["cmmlu-medicine"]["revision"]

    reads = {}
    for name, spec in sets.items():
        (tmp_path / name).mkdir()
        reads[name] = read_benchmark(spec, tmp_path / name)

    c = reads["ceval-medicine"]
    assert c.provenance["resolved_commit"] == sets["ceval-medicine"]["revision"]
    assert sorted(c.files) == [f"{s}/val-00000-of-00001.parquet" for s in ("basic_medicine", "clinical_medicine", "physician")]
    assert c.summary()["labelled"] == 6 and not c.problems
    for name, role in (("cmmlu-medicine", "domain"), ("cmmlu-general", "retention")):
        r, members = reads[name], sets[name]["members"]
        assert sets[name]["role"] == role
        assert sorted(r.files) == sorted(f"cmmlu_v1_0_1.zip/{m}" for m in members)  # test files of its subjects only
        assert r.summary()["labelled"] == len(members)
        assert [(p["reason"], p["location"]) for p in r.problems] == [("no_question", "line 3")] * len(members)
        assert {i["options"]["B"] for i in r.items} == {"太平洋"} and {tuple(i["answer"]) for i in r.items} == {("B",)}
    assert not set(reads["cmmlu-medicine"].files) & set(reads["cmmlu-general"].files)


def read_zip(tmp_path: Path, entries: dict[str, bytes], **spec):
    """read_benchmark on a zip under data/external/ holding `entries`, as a `path:` entry."""
    (tmp_path / "data/external").mkdir(parents=True)
    (tmp_path / "data/external/sets.zip").write_bytes(_zip(entries))
    (tmp_path / "scratch").mkdir()
    return read_benchmark({"name": "sets", "role": "domain", "path": "data/external/sets.zip", **spec}, tmp_path / "scratch")


def test_an_archive_member_that_would_land_outside_is_refused(tmp_path, monkeypatch):
    from medqa_scale.core.cli import PipelineError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="outside the archive"):
        read_zip(tmp_path, {"../../evil.csv": b"question,A,B,answer\nq,a,b,A\n"})
    assert not (tmp_path / "evil.csv").exists() and not (tmp_path.parent / "evil.csv").exists()


def test_members_that_match_nothing_say_which_patterns_to_check(tmp_path, monkeypatch):
    from medqa_scale.core.cli import PipelineError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(PipelineError, match="members patterns"):
        read_zip(tmp_path, {"test/a.csv": b"question,A,B,answer\nq,a,b,A\n"}, members=["dev/*"])
    (tmp_path / "again").mkdir()
    monkeypatch.chdir(tmp_path / "again")
    assert read_zip(tmp_path / "again", {"test/a.csv": b"question,A,B,answer\nq,a,b,A\n"}, members=["test/*"]).files == {
        "sets.zip/test/a.csv": {"encoding": "utf-8", "container": "csv", "items": 1, "read": 1, "unlabelled": 0}}
