"""Unit tests for the pipeline's pure parts: formatting, split, metrics, params, the synthetic
corpus, atomic writes and JSONL parsing. Offline and fast (no model is built or trained).

Run: python -m pytest tests/test_units.py -q
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest
import yaml

from stages import medqa_synth
from stages.atomic import atomic_path, read_jsonl, write_json, write_jsonl
from stages.download_data import parse_jsonl
from stages.formatting import IGNORE_INDEX, encode_example, prompt_ids, to_messages
from stages.medqa_synth import SYNTHETIC_MARK, generate_pairs, space_size
from stages.metrics import bleu_zh, rouge_zh, segment
from stages.params import (METHODS, ParamsError, PipelineError, load_params, read_yaml, scale_size,
                           validate)
from stages.split import nested_subsets, question_key, split_records
from stages.tiny_model import CHAT_TEMPLATE, build_tokenizer

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
SYSTEM = "你是一名医学助手。"


# --- formatting ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(medqa_synth.tokenizer_text(seed=0, n_pairs=300), vocab_size=500)


@pytest.fixture(scope="module")
def record():
    return generate_pairs(1, seed=7)[0]


def test_tokenizer_fixture_is_what_the_tests_assume(tokenizer):
    assert len(tokenizer) == 500
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"


def test_to_messages_without_answer_is_the_prompt():
    assert to_messages("头痛怎么办？", None, SYSTEM) == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "头痛怎么办？"},
    ]


def test_to_messages_with_answer_appends_the_assistant_turn():
    assert to_messages("头痛怎么办？", "多休息。", SYSTEM) == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "头痛怎么办？"},
        {"role": "assistant", "content": "多休息。"},
    ]
    # An empty answer is still an answer (only None means "prompt only").
    assert to_messages("q", "", "s")[-1] == {"role": "assistant", "content": ""}


def test_prompt_ids_render_chatml_and_end_with_the_assistant_header(tokenizer, record):
    messages = to_messages(record["question"], record["answer"], SYSTEM)
    prompt = prompt_ids(tokenizer, messages)
    assert tokenizer.decode(prompt) == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{record['question']}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    header = tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False)
    assert header[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert len(header) >= 2
    assert prompt[-len(header):] == header
    # The assistant turn, when present, is left out of the prompt.
    assert prompt == prompt_ids(tokenizer, to_messages(record["question"], None, SYSTEM))


def test_encode_example_masks_exactly_the_prompt(tokenizer, record):
    messages = to_messages(record["question"], record["answer"], SYSTEM)
    prompt = prompt_ids(tokenizer, messages)
    ex = encode_example(tokenizer, messages)
    ids, labels = ex["input_ids"], ex["labels"]
    n = len(prompt)

    assert set(ex) == {"input_ids", "attention_mask", "labels"}
    assert len(ids) == len(labels) == len(ex["attention_mask"]) > n
    assert ex["attention_mask"] == [1] * len(ids)
    assert ids[:n] == prompt
    assert labels[:n] == [IGNORE_INDEX] * n
    assert labels[n:] == ids[n:]
    assert IGNORE_INDEX not in labels[n:]
    assert labels.count(IGNORE_INDEX) == n
    assert tokenizer.decode(labels[n:]) == record["answer"] + "<|im_end|>" + "\n"
    assert tokenizer.decode(ids) == tokenizer.decode(prompt) + record["answer"] + "<|im_end|>\n"


def test_encode_example_handles_text_outside_the_tokenizer_corpus(tokenizer):
    # Byte-level BPE has no unknown token: unseen characters still round-trip.
    answer = "Take 2 tablets 😀 / 每日两次"
    ex = encode_example(tokenizer, to_messages("What now?", answer, "sys"))
    n = ex["labels"].count(IGNORE_INDEX)
    assert tokenizer.decode(ex["input_ids"][n:]) == answer + "<|im_end|>\n"


def test_encode_example_rejects_a_template_that_does_not_render_the_prompt_as_prefix(tokenizer, record):
    bad = build_tokenizer(medqa_synth.tokenizer_text(seed=0, n_pairs=300), vocab_size=500)
    # A marker that appears only when add_generation_prompt is set, at the very start.
    bad.chat_template = "{% if add_generation_prompt %}{{ '<|endoftext|>' }}{% endif %}" + CHAT_TEMPLATE
    messages = to_messages(record["question"], record["answer"], SYSTEM)
    with pytest.raises(ValueError, match="prompt differently"):
        encode_example(bad, messages)
    # The same chat through the good template encodes fine.
    assert encode_example(tokenizer, messages)["labels"][0] == IGNORE_INDEX


# --- split --------------------------------------------------------------------------------------


def _records(n: int) -> list[dict]:
    return [{"id": f"r{i:03d}", "question": f"问题{i}怎么办？", "answer": f"答{i}"} for i in range(n)]


def _ids(rs) -> list[str]:
    return [r["id"] for r in rs]


def test_question_key_ignores_whitespace_only():
    assert question_key("  头痛\t怎么办 ？\n") == "头痛怎么办？"
    assert question_key("头 痛\u3000怎么办？") == "头痛怎么办？"  # ideographic space is whitespace too
    assert question_key("头痛怎么办？") != question_key("头痛怎么办")  # punctuation is not whitespace


def test_split_records_is_deterministic_and_sized():
    records = _records(100)
    original = copy.deepcopy(records)
    a = split_records(records, 10, 15, seed=42)
    b = split_records(records, 10, 15, seed=42)
    assert [_ids(x) for x in a[:3]] == [_ids(x) for x in b[:3]] and a[3] == b[3] == 0
    assert records == original  # input is not shuffled in place
    test, dev, pool, leaked = a
    assert (len(test), len(dev), len(pool), leaked) == (10, 15, 75, 0)
    assert _ids(test) != _ids(records[:10])  # it did shuffle
    other = split_records(records, 10, 15, seed=43)
    assert _ids(other[0]) != _ids(test)  # and the seed matters


def test_split_records_sets_are_disjoint_and_cover_everything():
    records = _records(100)
    test, dev, pool, leaked = split_records(records, 10, 15, seed=1)
    t, d, p = set(_ids(test)), set(_ids(dev)), set(_ids(pool))
    assert not (t & d) and not (t & p) and not (d & p)
    assert t | d | p == set(_ids(records))


def test_split_records_drops_train_records_that_repeat_a_held_out_question():
    # Every question appears twice: once plain, once with extra whitespace.
    base = _records(60)
    twins = [{"id": f"t{i:03d}", "question": " " + r["question"].replace("怎么办", " 怎么办\t") + "\n",
              "answer": "别的答案"} for i, r in enumerate(base)]
    records = base + twins
    test, dev, pool, leaked = split_records(records, 8, 7, seed=3)

    held = {question_key(r["question"]) for r in test + dev}
    rest = [r for r in records if r["id"] not in set(_ids(test + dev))]
    expected_dropped = [r for r in rest if question_key(r["question"]) in held]

    assert len(test) == 8 and len(dev) == 7
    assert not any(question_key(r["question"]) in held for r in pool)
    assert set(_ids(pool)) == set(_ids(rest)) - set(_ids(expected_dropped))
    assert leaked == len(expected_dropped) == len(rest) - len(pool)
    # Each held-out question whose twin is not itself held out leaks exactly one record.
    assert 8 <= leaked <= 15
    assert len(test) + len(dev) + len(pool) + leaked == len(records)


def test_split_records_all_same_question_leaves_an_empty_pool():
    variants = ["头痛怎么办？", " 头痛怎么办？", "头痛 怎么办？", "头痛怎么办？\n", "\t头 痛 怎 么 办 ？"]
    records = [{"id": str(i), "question": variants[i % len(variants)], "answer": "a"} for i in range(20)]
    test, dev, pool, leaked = split_records(records, 2, 3, seed=0)
    assert (len(test), len(dev), pool, leaked) == (2, 3, [], 15)


def test_nested_subsets_are_prefixes_of_one_pool():
    pool = [{"id": i} for i in range(6000)]
    sizes = {label: scale_size(label) for label in ["1k", "2k", "5k"]}
    subsets = nested_subsets(pool, sizes)
    assert list(subsets) == ["1k", "2k", "5k"]
    assert [len(s) for s in subsets.values()] == [1000, 2000, 5000]
    assert subsets["1k"] == subsets["2k"][:1000] == pool[:1000]
    assert subsets["2k"] == subsets["5k"][:2000]
    assert subsets["5k"] == pool[:5000]


# --- metrics ------------------------------------------------------------------------------------


def test_segment_of_the_hand_checked_strings():
    # The expected values below are derived from these segmentations.
    assert segment("我今天头痛，需要休息") == "我 今天 头痛 ， 需要 休息"
    assert segment("我昨天头痛，需要吃药") == "我 昨天 头痛 ， 需要 吃药"
    assert segment("高血压患者应按时服药") == "高血压 患者 应 按时 服药"
    assert segment("高血压患者平时应低盐饮食并按时服药") == "高血压 患者 平时 应低 盐 饮食 并 按时 服药"
    assert segment("  ") == ""


def test_rouge_identical_is_100():
    text = "高血压患者应低盐饮食，按时服药。"
    scores = rouge_zh([text], [text])
    assert set(scores) == {"rouge-1", "rouge-2", "rouge-l"}
    for v in scores.values():
        assert v == pytest.approx(100, abs=1e-4)


def test_rouge_disjoint_is_0():
    assert rouge_zh(["建议多喝水"], ["骨折"]) == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}


def test_rouge_empty_prediction_scores_0_without_raising():
    assert rouge_zh([""], ["骨折需要固定"]) == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}
    assert rouge_zh(["   "], ["骨折需要固定"]) == {"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0}


def test_rouge_partial_overlap_hand_computed():
    # pred: 我 今天 头痛 ， 需要 休息   ref: 我 昨天 头痛 ， 需要 吃药   (6 words each)
    # unigrams: 4 shared (我 头痛 ， 需要) -> P = R = 4/6 -> F1 = 2/3
    # bigrams: 5 each, 2 shared ((头痛,，) (，,需要)) -> F1 = 2/5
    # LCS: 我 头痛 ， 需要 = 4 -> F1 = 2/3
    scores = rouge_zh(["我今天头痛，需要休息"], ["我昨天头痛，需要吃药"])
    assert scores["rouge-1"] == pytest.approx(100 * 2 / 3, rel=1e-6)
    assert scores["rouge-2"] == pytest.approx(40.0, rel=1e-6)
    assert scores["rouge-l"] == pytest.approx(100 * 2 / 3, rel=1e-6)


def test_rouge_partial_overlap_unequal_lengths_hand_computed():
    # pred: 高血压 患者 应 按时 服药 (5)   ref: 高血压 患者 平时 应低 盐 饮食 并 按时 服药 (9)
    # unigrams shared 4: P=4/5 R=4/9 -> F1 = 2*(16/45)/(56/45) = 4/7
    # bigrams 4 vs 8, shared 2 ((高血压,患者) (按时,服药)): P=1/2 R=1/4 -> F1 = 1/3
    # LCS 高血压 患者 按时 服药 = 4 -> F1 = 4/7
    scores = rouge_zh(["高血压患者应按时服药"], ["高血压患者平时应低盐饮食并按时服药"])
    assert scores["rouge-1"] == pytest.approx(100 * 4 / 7, rel=1e-6)
    assert scores["rouge-2"] == pytest.approx(100 / 3, rel=1e-6)
    assert scores["rouge-l"] == pytest.approx(100 * 4 / 7, rel=1e-6)


def test_rouge_is_a_mean_over_all_samples_including_empty_ones():
    scores = rouge_zh(["", "我今天头痛，需要休息"], ["骨折", "我昨天头痛，需要吃药"])
    assert scores["rouge-1"] == pytest.approx(100 * 2 / 3 / 2, rel=1e-6)
    assert scores["rouge-2"] == pytest.approx(20.0, rel=1e-6)
    assert scores["rouge-l"] == pytest.approx(100 / 3, rel=1e-6)


@pytest.mark.parametrize("preds,refs", [(["a"], ["a", "b"]), (["a", "b"], ["a"]), ([], [])])
def test_rouge_mismatched_or_empty_lists_raise(preds, refs):
    with pytest.raises(ValueError):
        rouge_zh(preds, refs)


def test_bleu_identical_is_100_with_zh_signature():
    score, signature = bleu_zh(["高血压患者应低盐饮食。", "多休息。"], ["高血压患者应低盐饮食。", "多休息。"])
    assert score == pytest.approx(100.0, abs=1e-6)
    assert "tok:zh" in signature.split("|")
    assert "nrefs:1" in signature.split("|")


def test_bleu_disjoint_is_0():
    score, _ = bleu_zh(["骨折需要固定"], ["感冒多喝水吧"])
    assert score == pytest.approx(0.0, abs=1e-9)


# --- params -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo_params():
    return load_params(PARAMS)


def test_repo_params_load_and_validate(repo_params):
    assert isinstance(repo_params, dict)
    assert validate(copy.deepcopy(repo_params)) == []
    assert repo_params["methods"] and set(repo_params["methods"]) <= set(METHODS)
    assert all(scale_size(s) > 0 for s in repo_params["split"]["scales"])
    assert isinstance(repo_params["train"]["lr"], float)


def test_lr_as_dvc_writes_it_loads_as_float(tmp_path):
    text = PARAMS.read_text(encoding="utf-8")
    new, n = re.subn(r"(?m)^(train:\n  lr: ).*$", r"\g<1>5e-05", text)
    assert n == 1
    path = tmp_path / "params.yaml"
    path.write_text(new, encoding="utf-8")

    assert read_yaml(path)["train"]["lr"] == 5e-05
    assert type(read_yaml(path)["train"]["lr"]) is float
    # The trap: PyYAML (YAML 1.1) reads it as a string.
    assert yaml.safe_load(new)["train"]["lr"] == "5e-05"
    # load_params accepts the file and gives a float.
    p = load_params(path)
    assert p["train"]["lr"] == 5e-05 and isinstance(p["train"]["lr"], float)
    # And a string lr (what PyYAML would have given) is reported, with the hint.
    problems = validate(yaml.safe_load(new))
    assert len(problems) == 1
    assert problems[0].startswith("train.lr: must be a number")
    assert "'5e-05' (str)" in problems[0]


def _bad_params(params: dict) -> dict:
    bad = copy.deepcopy(params)
    bad["methods"] = ["lora", "dora"]
    bad["train"]["lr"] = -1
    bad["split"]["scales"] = ["1k", "99k"]
    bad["lora"]["rr"] = 8
    bad["train"]["args"]["learning_rate"] = 1e-4
    bad["model"]["builtin"]["pretrain"]["lr"] = "5e-05"
    return bad


def test_validate_reports_every_problem_at_once(repo_params):
    assert repo_params["data"]["source"] == "builtin"
    assert repo_params["data"]["builtin_records"] < 99000 + 400
    problems = validate(_bad_params(repo_params))
    keys = sorted(p.split(":", 1)[0] for p in problems)
    assert keys == sorted(["methods", "train.lr", "split.scales", "lora.rr", "train.args.learning_rate",
                           "model.builtin.pretrain.lr"])
    by_key = {p.split(":", 1)[0]: p for p in problems}
    assert "'dora'" in by_key["methods"]
    assert "must be > 0, got -1" in by_key["train.lr"]
    assert "99000" in by_key["split.scales"] and "data.builtin_records" in by_key["split.scales"]
    assert "not a field" in by_key["lora.rr"]
    assert "set train.lr" in by_key["train.args.learning_rate"]
    assert "'5e-05' (str)" in by_key["model.builtin.pretrain.lr"]


def test_load_params_raises_one_params_error_listing_all(repo_params, tmp_path):
    path = tmp_path / "params.yaml"
    # JSON is YAML 1.2 and keeps the string '5e-05' quoted; PyYAML's safe_dump would write it bare,
    # and a YAML 1.2 reader would then (rightly) read it back as a float.
    path.write_text(json.dumps(_bad_params(repo_params), ensure_ascii=False, indent=1), encoding="utf-8")
    with pytest.raises(ParamsError) as info:
        load_params(path)
    err = info.value
    assert isinstance(err, PipelineError)
    assert len(err.problems) == 6
    msg = str(err)
    assert msg.startswith(f"{path} has 6 problem(s)")
    for problem in err.problems:
        assert f"  - {problem}" in msg
    for key in ("methods:", "train.lr:", "split.scales:", "lora.rr:", "train.args.learning_rate:",
                "model.builtin.pretrain.lr:"):
        assert key in msg


def test_load_params_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_validate_empty_lists_missing_keys():
    problems = validate({})
    assert "seed: missing; add it to conf/ (see conf/config.yaml) and recompose params.yaml" in problems
    assert any(p.startswith("train.lr: missing") for p in problems)
    assert len(problems) == 19


@pytest.mark.parametrize("label,size", [("20k", 20000), ("500", 500), ("1k", 1000), (500, 500), ("100k", 100000)])
def test_scale_size(label, size):
    assert scale_size(label) == size


@pytest.mark.parametrize("label", ["", "k", "0", "0k", "01k", "2K", "1.5k", "-1", "2m", "2 k", "20kk", None, 2.5])
def test_scale_size_rejects_bad_labels(label):
    with pytest.raises(ValueError, match="not a scale label"):
        scale_size(label)


def test_scale_size_rejects_trailing_newline():
    with pytest.raises(ValueError):
        scale_size("2k\n")


# --- medqa_synth --------------------------------------------------------------------------------


def test_generate_pairs_is_deterministic_per_seed():
    a, b = generate_pairs(300, seed=5), generate_pairs(300, seed=5)
    assert a == b
    assert a != generate_pairs(300, seed=6)


def test_generate_pairs_records():
    records = generate_pairs(2000, seed=11)
    assert len(records) == 2000
    assert [r["id"] for r in records[:2]] == ["synth-000000", "synth-000001"]
    assert len({r["id"] for r in records}) == 2000
    assert len({r["question"] for r in records}) == 2000
    assert all(r["answer"].endswith(SYNTHETIC_MARK) for r in records)
    assert all(set(r) == {"id", "question", "answer", "intent"} for r in records)
    assert {r["intent"] for r in records} == set(medqa_synth.INTENTS)


def test_space_size_and_every_index_gives_a_distinct_question():
    m = medqa_synth
    n = space_size()
    assert n >= 120000
    assert n == len(m.CONDITIONS) * len(m.PEOPLE) * len(m.DURATIONS) * 6 * (len(m.SYMPTOM_PAIRS) + len(m.INTENTS) - 1)
    assert n == 195840
    questions = {m._pair_at(i)[1] for i in range(n)}
    assert len(questions) == n  # distinct questions, not just distinct (question, answer) pairs


def test_generate_pairs_rejects_more_than_the_space():
    with pytest.raises(ValueError, match=str(space_size())):
        generate_pairs(space_size() + 1, seed=0)


# --- atomic -------------------------------------------------------------------------------------


def test_atomic_path_replaces_on_success(tmp_path):
    final = tmp_path / "sub" / "out.txt"  # parent is created
    with atomic_path(final) as tmp:
        assert tmp.parent == final.parent and tmp != final
        tmp.write_text("new", encoding="utf-8")
        assert not final.exists()
    assert final.read_text(encoding="utf-8") == "new"
    assert sorted(os.listdir(final.parent)) == ["out.txt"]


def test_atomic_path_keeps_old_content_and_no_temp_when_block_raises(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(final) as tmp:
            tmp.write_text("half", encoding="utf-8")
            raise RuntimeError("boom")
    assert final.read_text(encoding="utf-8") == "old"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]


def test_atomic_path_directory_replaces_existing_dir(tmp_path):
    final = tmp_path / "split"
    final.mkdir()
    (final / "stale.jsonl").write_text("x", encoding="utf-8")
    with atomic_path(final, directory=True) as tmp:
        assert tmp.is_dir()
        (tmp / "test.jsonl").write_text("t", encoding="utf-8")
    assert sorted(os.listdir(final)) == ["test.jsonl"]
    assert sorted(os.listdir(tmp_path)) == ["split"]  # no .tmp or .old left behind


def test_atomic_path_directory_failure_keeps_old_dir(tmp_path):
    final = tmp_path / "split"
    final.mkdir()
    (final / "keep.jsonl").write_text("k", encoding="utf-8")
    with pytest.raises(KeyError):
        with atomic_path(final, directory=True) as tmp:
            (tmp / "new.jsonl").write_text("n", encoding="utf-8")
            raise KeyError("x")
    assert sorted(os.listdir(final)) == ["keep.jsonl"]
    assert sorted(os.listdir(tmp_path)) == ["split"]


def test_write_json_sorted_keys_and_unicode(tmp_path):
    path = tmp_path / "m.json"
    write_json(path, {"b": 1, "a": {"d": 2, "c": [3]}, "中": "文"})
    assert path.read_text(encoding="utf-8") == (
        '{\n  "a": {\n    "c": [\n      3\n    ],\n    "d": 2\n  },\n  "b": 1,\n  "中": "文"\n}\n'
    )


def test_write_jsonl_round_trip(tmp_path):
    records = [{"q": "头痛\u2028怎么办", "a": "休息"}, {"q": "x", "a": "y\nz"}]
    path = tmp_path / "r.jsonl"
    write_jsonl(path, records)
    assert path.read_text(encoding="utf-8").count("\n") == 2
    assert read_jsonl(path) == records


# --- download_data.parse_jsonl ------------------------------------------------------------------


def test_parse_jsonl_counts_skipped_lines_by_reason(tmp_path):
    lines = [
        json.dumps({"id": 7, "question": " 头痛怎么办？ ", "answer": "多休息。"}, ensure_ascii=False),
        "",
        "{not json",
        json.dumps({"question": "只有问题"}, ensure_ascii=False),
        json.dumps({"question": "  ", "answer": "空问题"}, ensure_ascii=False),
        json.dumps({"question": 1, "answer": "数字问题"}, ensure_ascii=False),
        "[1, 2]",
        "plain text",
        json.dumps({"question": "发热怎么办？", "answer": "退热。"}, ensure_ascii=False),
    ]
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records, skipped = parse_jsonl(path)
    assert records == [
        {"id": "7", "question": "头痛怎么办？", "answer": "多休息。"},
        {"id": "line-9", "question": "发热怎么办？", "answer": "退热。"},
    ]
    assert dict(skipped) == {"not_json": 2, "missing_question_or_answer": 4}


def test_parse_jsonl_gb18030_file_raises_pipeline_error(tmp_path):
    path = tmp_path / "gbk.jsonl"
    line = json.dumps({"question": "头痛怎么办？", "answer": "多休息。"}, ensure_ascii=False) + "\n"
    path.write_bytes(line.encode("gb18030"))
    with pytest.raises(PipelineError) as info:
        parse_jsonl(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "not UTF-8" in msg
    assert "re-encode" in msg


@pytest.mark.parametrize("question, encoding", [
    ("头痛\u2028怎么办", "utf-8"),  # str.splitlines() would split this record in two
    ("头痛", "utf-8-sig"),  # a byte-order mark must not spoil the first record
])
def test_parse_jsonl_keeps_records_splitlines_or_a_bom_would_break(tmp_path, question, encoding):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": question, "answer": "休息"}, ensure_ascii=False) + "\n", encoding=encoding)
    records, skipped = parse_jsonl(path)
    assert len(records) == 1 and not skipped
