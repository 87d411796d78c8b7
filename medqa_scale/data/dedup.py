"""Exact and near-duplicate text, leaks of held-out items into training data, and the report
entry of each record left out for any reason.

Exact duplicates share a normalised fingerprint (NFKC, lower case, no whitespace or
punctuation). Near duplicates are found with MinHash over character 3-grams and locality-
sensitive hashing (datasketch): two texts whose estimated Jaccard similarity reaches the
threshold count as one.

The signatures are exactly those of datasketch's MinHash with scheme affine32 and `shingle_hash`
as its hash function (a test checks it), computed for all texts at once with numpy, one
permutation at a time: datasketch hashes every 3-gram with SHA-1 in Python, one set at a time,
which took most of preprocess + split on 130k records.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

SHINGLE = 3
EXCERPT_CHARS = 60
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))  # MurmurHash3


def fingerprint(text: str) -> str:
    """The text with everything that does not change its meaning taken out."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).lower() if c.isalnum())


def shingles(text: str) -> set[bytes]:
    key = fingerprint(text)
    if len(key) <= SHINGLE:
        return {key.encode("utf-8")}
    return {key[i:i + SHINGLE].encode("utf-8") for i in range(len(key) - SHINGLE + 1)}


def shingle_hash(packed: np.ndarray) -> np.ndarray:
    """32-bit hashes of 3-grams packed as c1 << 42 | c2 << 21 | c3 (code points are below 2^21):
    the top half of a Fibonacci (multiplicative) hash."""
    with np.errstate(over="ignore"):
        return ((packed.astype(np.uint64) * _GOLDEN) >> np.uint64(32)).astype(np.uint32)


def packed_shingles(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(packed 3-grams of every text's fingerprint, the index of the text each belongs to); a
    fingerprint shorter than three characters is padded with zeros into one 3-gram."""
    keys = [fingerprint(t).ljust(SHINGLE, "\0") for t in texts]
    lengths = np.array([len(k) for k in keys], dtype=np.int64)
    codes = np.frombuffer("".join(keys).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    packed = (codes[:-2] << np.uint64(42)) | (codes[1:-1] << np.uint64(21)) | codes[2:]
    owner = np.repeat(np.arange(len(keys)), lengths)[:-2]
    ends = np.cumsum(lengths)
    keep = np.arange(len(packed)) + 2 < ends[owner]  # no 3-gram spans two texts
    return packed[keep], owner[keep]


def signatures(texts: Sequence[str], num_perm: int, seed: int) -> np.ndarray:
    """The (texts x num_perm) affine32 MinHash signatures: for each permutation (odd a, b from
    datasketch's generator for `seed`), the min over a text's 3-grams of a * fmix(h) + b mod 2^32."""
    if not texts:
        return np.zeros((0, num_perm), dtype=np.uint32)
    packed, owner = packed_shingles(texts)
    h = shingle_hash(packed)
    s1, m1, s2, m2, s3 = _FMIX32
    with np.errstate(over="ignore"):
        h = h ^ (h >> s1)
        h = h * m1
        h = h ^ (h >> s2)
        h = h * m2
        h = h ^ (h >> s3)
        gen = np.random.RandomState(seed)
        a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])  # every text has a 3-gram
        out = np.empty((num_perm, len(texts)), dtype=np.uint32)
        for k in range(num_perm):  # one permutation at a time keeps the arrays contiguous and small
            out[k] = np.minimum.reduceat(h * a[k] + b[k], starts)
    return out.T


def minhashes(texts: Sequence[str], num_perm: int, seed: int) -> list:
    """datasketch LeanMinHash objects of `texts`, ready for MinHashLSH."""
    from datasketch import LeanMinHash

    return [LeanMinHash(seed=seed, hashvalues=row, scheme="affine32") for row in signatures(texts, num_perm, seed)]


def _lsh(threshold: float, num_perm: int):
    from datasketch import MinHashLSH

    return MinHashLSH(threshold=threshold, num_perm=num_perm)


def left_out(record: dict, reason: str, match: dict | None = None) -> dict:
    """A record's entry in a stage's report of what it left out: why, where it came from (the
    source, file and line that download_data traced), an excerpt, and the record it repeats."""
    entry = {"reason": reason, "id": record.get("id"), "source": record.get("source"), **(record.get("origin") or {}),
             "excerpt": record.get("question", "")[:EXCERPT_CHARS]}
    if match is not None:
        entry["repeats"] = {"id": match.get("id"), "source": match.get("source"), **(match.get("origin") or {})}
    return entry


def reason_counts(entries: list[dict]) -> dict[str, int]:
    """How many report entries there are of each reason."""
    return dict(sorted(Counter(e["reason"] for e in entries).items()))


def deduplicate(records: list[dict], text: Callable[[dict], str], threshold: float, num_perm: int,
                seed: int) -> tuple[list[dict], list[tuple[dict, str, dict]]]:
    """(the records with every exact or near duplicate of an earlier one removed, and each
    removed record as (record, "exact_duplicate" or "near_duplicate", the kept record it repeats))."""
    first: dict[str, dict] = {}
    unique, dropped = [], []
    for r in records:
        key = fingerprint(text(r))
        if key in first:
            dropped.append((r, "exact_duplicate", first[key]))
        else:
            first[key] = r
            unique.append(r)
    lsh, kept = _lsh(threshold, num_perm), []
    for i, (r, mh) in enumerate(zip(unique, minhashes([text(r) for r in unique], num_perm, seed))):
        if matches := lsh.query(mh):
            dropped.append((r, "near_duplicate", unique[min(map(int, matches))]))
            continue
        lsh.insert(str(i), mh)
        kept.append(r)
    return kept, dropped


def leaks(candidates: list[dict], held_out: list[dict], threshold: float, num_perm: int,
          seed: int) -> list[tuple[str, dict] | None]:
    """For each candidate, None, or why it leaks a held-out item and which one: its question
    repeats or nearly repeats a held-out question, or its answer a held-out answer."""
    found: list[tuple[str, dict] | None] = [None] * len(candidates)
    for field in ("question", "answer"):
        exact: dict[str, dict] = {}
        for r in held_out:
            exact.setdefault(fingerprint(r[field]), r)
        lsh = _lsh(threshold, num_perm)
        for i, mh in enumerate(minhashes([r[field] for r in held_out], num_perm, seed)):
            lsh.insert(str(i), mh)
        todo = [i for i, r in enumerate(candidates) if found[i] is None]
        for i in todo:
            if (match := exact.get(fingerprint(candidates[i][field]))) is not None:
                found[i] = (f"{field}_repeats_held_out", match)
        todo = [i for i in todo if found[i] is None]
        for i, mh in zip(todo, minhashes([candidates[i][field] for i in todo], num_perm, seed)):
            if matches := lsh.query(mh):
                found[i] = (f"{field}_near_held_out", held_out[min(map(int, matches))])
    return found
