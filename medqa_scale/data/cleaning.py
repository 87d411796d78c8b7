"""Cleaning question and answer text: whitespace, safe Unicode normalisation, HTML remnants, and
optional masking of personal data. Pure functions of one string.
"""

from __future__ import annotations

import html
import re
import unicodedata

_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
_BREAK = re.compile(r"<(?:br|p|div|li)\b[^<>]*>", re.I)
_MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?![0-9A-Za-z])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# Cc without \t \n \v \f \r and the separators \x1c-\x1f (whitespace to str.split, made one space),
# plus U+FEFF (a byte-order mark inside text, where files were concatenated) and U+FFFE.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ufeff\ufffe]")
PII_MASKS = (("id_card", _ID_CARD, "[身份证号]"), ("mobile", _MOBILE, "[手机号]"), ("email", _EMAIL, "[邮箱]"))


def clean_text(text: str) -> str:
    """HTML tags and entities out, control characters out, safe NFKC, every run of whitespace
    (U+3000 too) one space."""
    return clean_text_counted(text)[0]


def clean_text_counted(text: str) -> tuple[str, int]:
    """clean_text, and how many control characters it removed."""
    text, removed = strip_control(html.unescape(_TAG.sub("", _BREAK.sub(" ", text))))
    return " ".join(safe_nfkc(text).split()), removed


def strip_control(text: str) -> tuple[str, int]:
    """`text` without control characters (NUL, escape, DEL, C1: Unicode's Cc, except the whitespace
    ones, which become a space) and stray byte-order marks, and how many were removed."""
    removed = _CONTROL.findall(text)
    return (_CONTROL.sub("", text), len(removed)) if removed else (text, 0)


def safe_nfkc(text: str) -> str:
    """NFKC only where it cannot change meaning or style: full-width Latin letters and digits
    become ASCII, the ideographic space a space. Chinese punctuation (，。？) is kept as written,
    since NFKC would turn it into ASCII punctuation."""
    return "".join(_safe_char(c) for c in text)


def _safe_char(c: str) -> str:
    if c == "\u3000":
        return " "
    if "\uff10" <= c <= "\uff5a":  # full-width 0-9, A-Z, a-z and the few signs between them
        n = unicodedata.normalize("NFKC", c)
        return n if n.isalnum() else c
    return c


def mask_pii(text: str) -> tuple[str, dict[str, int]]:
    """Chinese ID-card numbers, mobile numbers and e-mail addresses replaced by a placeholder,
    and how many of each were masked."""
    counts = {}
    for name, pattern, mask in PII_MASKS:
        text, n = pattern.subn(mask, text)
        if n:
            counts[name] = n
    return text, counts


def length_problem(question: str, answer: str, limits: dict) -> str | None:
    """The reason a pair is too short or too long in characters, or None. `limits` holds
    min_question_chars, max_question_chars, min_answer_chars, max_answer_chars."""
    if len(question) < limits["min_question_chars"]:
        return "question_too_short"
    if len(question) > limits["max_question_chars"]:
        return "question_too_long"
    if len(answer) < limits["min_answer_chars"]:
        return "answer_too_short"
    if len(answer) > limits["max_answer_chars"]:
        return "answer_too_long"
    return None
