"""medqa_scale.data.sources: every kind of data source, fetched for real from local stand-ins (a folder,
a local HTTP server, the local hub stand-in), read whatever the format, every record traced to
its file and line, every item left out reported.

Run: python -m pytest tests/test_sources.py -q
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from medqa_scale.core.cli import PipelineError
from medqa_scale.core.params import read_yaml
from medqa_scale.data.sources import read_source

ROOT = Path(__file__).resolve().parents[1]
Q, A = "头痛三天了怎么办？", "建议多休息，持续不缓解请就医。"


def jsonl(objs) -> str:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs)


def test_builtin_source_records_carry_their_group_and_origin(tmp_path):
    read = read_source({"builtin": 50}, tmp_path, seed=1)
    assert read.name == "builtin" and read.kind == "builtin" and len(read.records) == 50 and not read.problems
    r = read.records[0]
    assert set(r) == {"id", "source", "origin", "question", "answer", "history", "group"}
    assert r["source"] == "builtin" and r["origin"] == {"file": "generator", "location": "item 0"}


def test_a_path_source_folder_of_mixed_formats(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = Path("data/external/mix")
    folder.mkdir(parents=True)
    (folder / "a.json").write_text(jsonl([{"question": Q, "answer": A}, {"问": "咳嗽？", "答": "多喝水。"}]), encoding="utf-8")
    (folder / "b.csv").write_bytes("title,ask,answer\n发热,\"孩子发热，\n怎么办？\",物理降温\n".encode("gb18030"))
    (folder / ".hidden").write_text("ignored")

    read = read_source({"path": "data/external/mix", "name": "mix"}, tmp_path / "scratch", seed=0)

    assert [(r["question"], r["answer"]) for r in read.records] == [
        (Q, A), ("咳嗽？", "多喝水。"), ("孩子发热，\n怎么办？", "物理降温")]  # the title is inside the ask
    assert [r["origin"] for r in read.records] == [{"file": "a.json", "location": "line 1"},
                                                   {"file": "a.json", "location": "line 2"},
                                                   {"file": "b.csv", "location": "line 2"}]
    assert {r["source"] for r in read.records} == {"mix"}
    assert read.files["b.csv"] == {"encoding": "gb18030", "container": "csv", "items": 1, "records": 1}
    assert "department" not in read.records[0]


def test_departments_named_by_the_data_are_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("data/external").mkdir(parents=True)
    Path("data/external/qa.csv").write_text("department,title,ask,answer\n儿科,发热,孩子发热怎么办？,物理降温\n", encoding="utf-8")
    [record] = read_source({"path": "data/external/qa.csv"}, tmp_path / "s", seed=0).records
    assert record["department"] == "儿科"


def test_1000_lines_with_10_malformed_give_990_records_and_a_report_of_the_10(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("data/external").mkdir(parents=True)
    bad = {3, 50, 101, 222, 499, 500, 613, 777, 888, 999}
    lines = [('{"question": "断了的行' if n % 2 else '{"title": "没有回答"}') if n in bad
             else json.dumps({"question": f"问题{n}", "answer": f"回答{n}"}, ensure_ascii=False) for n in range(1, 1001)]
    Path("data/external/qa.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    read = read_source({"path": "data/external/qa.jsonl"}, tmp_path / "scratch", seed=0)

    assert len(read.records) == 990 and read.name == "qa"
    assert sorted(int(p["location"].split()[1]) for p in read.problems) == sorted(bad)
    assert {p["reason"] for p in read.problems} == {"not_json", "unknown_shape"}
    assert all(p["file"] == "qa.jsonl" and p["excerpt"] for p in read.problems)
    assert read.summary()["skipped"] == {"not_json": 6, "unknown_shape": 4}  # odd lines broken, even ones shapeless
    assert read.bad_fraction == pytest.approx(0.01)


def test_a_url_source_is_downloaded_and_checked(file_server, tmp_path):
    root, url = file_server
    data = jsonl([{"instruction": Q, "input": "", "output": A}]).encode()
    (root / "alpaca.json").write_bytes(data)
    source = {"url": f"{url}/alpaca.json", "sha256": hashlib.sha256(data).hexdigest()}

    (tmp_path / "scratch").mkdir()
    read = read_source(source, tmp_path / "scratch", seed=0)

    assert read.name == "alpaca" and [(r["question"], r["answer"]) for r in read.records] == [(Q, A)]
    assert read.provenance["sha256"] == source["sha256"]


def test_an_hf_dataset_source_reads_the_raw_files_at_the_resolved_commit(hub_env, tmp_path):
    files = {"data/train.jsonl": jsonl([{"conversations": [{"from": "human", "value": Q}, {"from": "gpt", "value": A}]}]).encode(),
             "README.md": b"# card\n\nQ: not data\nA: not data\n", "loader.py": b"raise SystemExit('scripts are not run')\n"}
    commit = hub_env.add_commit("med-org/sharegpt", files, repo_type="dataset")

    read = read_source({"hf": "med-org/sharegpt", "revision": "main", "files": ["*.jsonl", "*.md"]}, tmp_path, seed=0)

    assert read.provenance["resolved_commit"] == commit
    assert [(r["question"], r["answer"]) for r in read.records] == [(Q, A)]  # the README card is no data
    assert read.records[0]["origin"] == {"file": "data/train.jsonl", "location": "line 1"}


def test_the_study_source_reads_a_stand_in_of_huatuo26m_lite_at_the_pinned_commit(hub_env, tmp_path):
    # The repo's layout and record shape (dataset_infos.json: id, answer, score, label, question,
    # related_diseases), served at the commit conf/config.yaml pins.
    [source] = read_yaml(ROOT / "conf/config.yaml")["data"]["sources"]
    rows = [{"id": i, "answer": f"{A}{i}", "score": 5, "label": "内科", "question": f"{Q}{i}", "related_diseases": "头痛"}
            for i in range(3)]
    hub_env.add_commit(source["hf"], {"format_data.jsonl": jsonl(rows).encode(), "README.md": b"---\nlicense: apache-2.0\n---\n",
                                      "my_dataset.py": b"raise SystemExit('scripts are not run')\n"},
                       repo_type="dataset", sha=source["revision"])
    hub_env.add_commit(source["hf"], {"format_data.jsonl": b"{}\n"}, repo_type="dataset")  # main moves on; the pin holds

    read = read_source(source, tmp_path, seed=0)

    assert read.name == "huatuo26m-lite" and read.provenance["resolved_commit"] == source["revision"]
    assert [(r["question"], r["answer"], r["department"]) for r in read.records] == [(f"{Q}{i}", f"{A}{i}", "内科") for i in range(3)]
    assert list(read.files) == ["format_data.jsonl"] and not read.problems


def test_multi_turn_items_keep_their_history(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("data/external").mkdir(parents=True)
    Path("data/external/chat.jsonl").write_text(jsonl([{"messages": [
        {"role": "user", "content": "你好"}, {"role": "assistant", "content": "请讲。"},
        {"role": "user", "content": Q}, {"role": "assistant", "content": A}]}]), encoding="utf-8")
    [record] = read_source({"path": "data/external/chat.jsonl"}, tmp_path / "s", seed=0).records
    assert (record["question"], record["answer"], record["history"]) == (Q, A, [["你好", "请讲。"]])


def test_limit_keeps_the_first_records(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("data/external").mkdir(parents=True)
    Path("data/external/qa.jsonl").write_text(jsonl([{"question": f"问题{i}", "answer": A} for i in range(9)]), encoding="utf-8")
    read = read_source({"path": "data/external/qa.jsonl", "limit": 4}, tmp_path / "s", seed=0)
    assert [r["question"] for r in read.records] == ["问题0", "问题1", "问题2", "问题3"]


def test_a_source_without_files_is_refused(hub_env, tmp_path):
    hub_env.add_commit("med-org/empty", {"README.md": b"# nothing\n"}, repo_type="dataset")
    with pytest.raises(PipelineError, match="has no files"):
        read_source({"hf": "med-org/empty", "revision": "main", "files": ["*.jsonl"]}, tmp_path, seed=0)


# --- the download_data stage ----------------------------------------------------------------------


def run_stage(workspace: Path, sources: list, max_bad_fraction: float = 0.2) -> subprocess.CompletedProcess:
    params = read_yaml(ROOT / "params.yaml")
    params["data"] = {"sources": sources, "max_bad_fraction": max_bad_fraction}
    with open(workspace / "params.yaml", "w", encoding="utf-8") as f:
        YAML(typ="safe", pure=True).dump(params, f)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "stages.download_data"], cwd=workspace, env=env,
                          capture_output=True, text=True)


def test_the_stage_writes_records_report_and_counts(tmp_path):
    (tmp_path / "data/external").mkdir(parents=True)
    (tmp_path / "data/external/qa.jsonl").write_text(jsonl([{"question": Q, "answer": A}]) + "not json\n", encoding="utf-8")
    proc = run_stage(tmp_path, [{"path": "data/external/qa.jsonl"}, {"builtin": 20}], max_bad_fraction=0.5)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "data/raw/qa.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 21 and records[0]["source"] == "qa" and records[1]["source"] == "builtin"
    report = json.loads((tmp_path / "data/raw/report.json").read_text(encoding="utf-8"))
    assert report == {"builtin": [], "qa": [{"reason": "not_json", "file": "qa.jsonl", "location": "line 2",
                                             "excerpt": report["qa"][0]["excerpt"]}]}
    summary = json.loads((tmp_path / "metrics/download_data.json").read_text(encoding="utf-8"))
    assert summary["records"] == 21 and summary["skipped_total"] == 1
    assert summary["sources"]["qa"]["skipped"] == {"not_json": 1}


def test_the_stage_stops_when_a_source_is_mostly_unreadable(tmp_path):
    (tmp_path / "data/external").mkdir(parents=True)
    (tmp_path / "data/external/qa.jsonl").write_text(jsonl([{"question": Q, "answer": A}]) + "x\ny\n", encoding="utf-8")
    proc = run_stage(tmp_path, [{"path": "data/external/qa.jsonl"}])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'qa': 2 of 3 items (66.7%) could not be read" in proc.stderr and "max_bad_fraction" in proc.stderr
    assert not (tmp_path / "data/raw/qa.jsonl").exists()


def test_shares_subsample_to_the_largest_mix_the_sources_allow(tmp_path):
    from medqa_scale.data.sources import apply_shares

    a, b, c = (read_source({"builtin": n, "name": name}, tmp_path, seed=i)
               for i, (n, name) in enumerate(((100, "a"), (1000, "b"), (50, "c"))))
    before_b = list(b.records)
    dropped = apply_shares([a, b, c], [0.25, 0.75, None], seed=3)
    # a (100 records at 25%) limits the mix to 400: b keeps 300 of its 1000, c (no share) keeps all.
    assert (len(a.records), len(b.records), len(c.records)) == (100, 300, 50)
    assert dropped == {"b": 700}
    assert all(r in before_b for r in b.records) and b.records == [r for r in before_b if r in b.records]  # order kept
    assert apply_shares([a, b], [None, None], seed=3) == {}
