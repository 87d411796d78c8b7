"""medqa_scale.data.cleaning: whitespace, safe NFKC, HTML remnants, personal data, length limits.

Run: python -m pytest tests/test_cleaning.py -q
"""

from __future__ import annotations

import pytest

from medqa_scale.data.cleaning import clean_text, length_problem, mask_pii, safe_nfkc


@pytest.mark.parametrize("raw,clean", [
    ("\u3000 头痛\t怎么办？\n\n ", "头痛 怎么办？"),
    ("血压<br/>偏高<b>怎么办</b>？", "血压 偏高怎么办？"),
    ("<p>多喝水</p>&nbsp;&amp;休息", "多喝水 &休息"),
    ("血糖 ＜ 7 mmol/L", "血糖 ＜ 7 mmol/L"),  # a comparison, not a tag
    ("ＣＴ检查显示２ｃｍ结节", "CT检查显示2cm结节"),
    ("你好，请问。", "你好，请问。"),
])
def test_clean_text(raw, clean):
    assert clean_text(raw) == clean


def test_safe_nfkc_keeps_chinese_punctuation_and_other_compatibility_forms():
    assert safe_nfkc("（１）发热，咳嗽！") == "（1）发热，咳嗽！"
    assert safe_nfkc("①②") == "①②"  # NFKC would make these plain digits


def test_mask_pii_counts_each_kind():
    text = "我的电话13812345678，身份证11010519491231002X，邮箱 a.b@example.com，血压140/90"
    masked, counts = mask_pii(text)
    assert masked == "我的电话[手机号]，身份证[身份证号]，邮箱 [邮箱]，血压140/90"
    assert counts == {"mobile": 1, "id_card": 1, "email": 1}


def test_mask_pii_leaves_numbers_that_are_not_personal_data():
    text = "每日剂量 2000 毫克，连续 138123456789 次"  # 12 digits: no mobile number
    assert mask_pii(text) == (text, {})


LIMITS = {"min_question_chars": 2, "max_question_chars": 10, "min_answer_chars": 2, "max_answer_chars": 5}


@pytest.mark.parametrize("q,a,reason", [
    ("头痛？", "休息。", None), ("痛", "休息。", "question_too_short"), ("头" * 11, "休息。", "question_too_long"),
    ("头痛？", "好", "answer_too_short"), ("头痛？", "多" * 6, "answer_too_long"),
])
def test_length_problem(q, a, reason):
    assert length_problem(q, a, LIMITS) == reason
