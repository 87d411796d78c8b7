"""Answer-quality metrics, as pure functions of predictions and references, with bootstrap
confidence intervals from resampling the test questions (by group where groups are held out
together) and the training seeds.

Headline ROUGE counts every n-gram occurrence over jieba words, punctuation left out, so that an
answer repeated twenty times or an answer of punctuation alone scores what it deserves.
LLaMA-Factory's ROUGE (rouge-chinese's default `exclusive=True`: each distinct n-gram counted once,
punctuation counted as words) is kept under its own keys (`lf-rouge-*`) with its char-level
BLEU-4 (`char-bleu-4`), for comparison with papers built on that tool.
"""

from __future__ import annotations

import logging
import math
import unicodedata

import jieba
import numpy as np
import sacrebleu
from rouge_chinese import Rouge

jieba.setLogLevel(logging.WARNING)

ROUGE_KEYS = ("rouge-1", "rouge-2", "rouge-l")
LF_ROUGE_KEYS = tuple(f"lf-{k}" for k in ROUGE_KEYS)  # LLaMA-Factory's ComputeSimilarity
CHAR_BLEU = "char-bleu-4"  # LLaMA-Factory's bleu-4
NLL = "nll"  # the reference answer's negative log-likelihood per token (medqa_scale.evaluate.likelihood)
LOWER_IS_BETTER = {NLL}


def is_punctuation(word: str) -> bool:
    return all(unicodedata.category(c).startswith("P") for c in word)


def words(text: str) -> list[str]:
    """jieba words, whitespace and punctuation left out."""
    return [w for w in jieba.cut(text) if w.strip() and not is_punctuation(w.strip())]


def segment(text: str) -> str:
    """The words of `words` joined by spaces, the input rouge-chinese expects."""
    return " ".join(words(text))


def _rouge_f(pairs: list[tuple[str, str]], exclusive: bool) -> dict[str, list[float]]:
    """ROUGE-1/2/L F1 x100 of each (hypothesis, reference) pair of space-joined words; 0 where
    either side is empty (rouge-chinese refuses empty text)."""
    out = {key: [0.0] * len(pairs) for key in ROUGE_KEYS}
    scorable = [i for i, (p, r) in enumerate(pairs) if p.split() and r.split()]
    if scorable:
        scores = Rouge(exclusive=exclusive).get_scores([pairs[i][0] for i in scorable], [pairs[i][1] for i in scorable])
        for i, s in zip(scorable, scores):
            for key in ROUGE_KEYS:
                out[key][i] = 100 * s[key]["f"]
    return out


def _check_lengths(predictions: list[str], references: list[str]) -> None:
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need equal, non-zero numbers of predictions and references, got {len(predictions)} and {len(references)}")


def rouge_per_sample(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """ROUGE-1/2/L F1 of each sample, 0-100: every n-gram occurrence counted (rouge-chinese with
    exclusive=False) over `words`; an answer with no words scores 0."""
    _check_lengths(predictions, references)
    return _rouge_f([(segment(p), segment(r)) for p, r in zip(predictions, references)], exclusive=False)


def lf_rouge_per_sample(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """LLaMA-Factory's ROUGE-1/2/L of each sample, exactly: all jieba tokens (punctuation too)
    joined by spaces, rouge-chinese's default exclusive=True, each F1 x100 rounded to 4 places."""
    _check_lengths(predictions, references)
    pairs = [(" ".join(jieba.cut(p)), " ".join(jieba.cut(r))) for p, r in zip(predictions, references)]
    return {f"lf-{k}": [round(v, 4) for v in values] for k, values in _rouge_f(pairs, exclusive=True).items()}


def rouge_zh(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 over all samples, 0-100."""
    return {key: float(np.mean(values)) for key, values in rouge_per_sample(predictions, references).items()}


def bleu_zh(predictions: list[str], references: list[str]) -> tuple[float, str]:
    """Corpus BLEU with sacrebleu's Chinese tokenizer, and its signature for the record."""
    bleu = sacrebleu.metrics.BLEU(tokenize="zh")
    score = bleu.corpus_score(predictions, [references])
    return score.score, str(bleu.get_signature())


def char_bleu4_per_sample(predictions: list[str], references: list[str]) -> list[float]:
    """The 'bleu-4' LLaMA-Factory reports, per sample: sentence BLEU-4 over characters (NLTK,
    smoothing method3), 0-100; an empty prediction scores 0. Kept so that numbers compare with
    papers built on that tool; corpus BLEU (`bleu_zh`) is the standard one."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    smooth = SmoothingFunction().method3
    return [round(100 * sentence_bleu([list(r)], list(p), smoothing_function=smooth), 4) if p else 0.0
            for p, r in zip(predictions, references)]


def char_bleu4(predictions: list[str], references: list[str]) -> float:
    return float(np.mean(char_bleu4_per_sample(predictions, references)))


def bleu_stats(predictions: list[str], references: list[str]) -> list[list[int]]:
    """sacrebleu's sufficient statistics of each sentence (lengths, n-gram matches and totals):
    summed over any subset of sentences they give that subset's corpus BLEU."""
    return [list(map(int, row)) for row in _BLEU._extract_corpus_statistics(predictions, [references])]


def bleu_from_stats(stats) -> float:
    """Corpus BLEU of summed sentence statistics; equals `bleu_zh` on the same sentences."""
    return float(_BLEU._compute_score_from_stats(list(np.asarray(stats).tolist())).score)


# sacrebleu's own bootstrap seeds from an environment variable and reports mean +- 1.96 sd; its
# sentence statistics, summed over each resample, give the corpus BLEU of that resample instead.
_BLEU = sacrebleu.metrics.BLEU(tokenize="zh")
ACCURACY = "accuracy"  # a multiple-choice item answered right, x100 (stage benchmark)
MEAN_METRICS = (*ROUGE_KEYS, *LF_ROUGE_KEYS, CHAR_BLEU, ACCURACY)  # means of per-sample scores
METRICS = (*ROUGE_KEYS, "bleu", *LF_ROUGE_KEYS, CHAR_BLEU)  # from the answers (evaluate stage)
# Corpus-level metrics from per-answer sufficient statistics: summed over any set of answers, the
# statistics give that set's value (BLEU; NLL per token = total NLL / total answer tokens).
STATS = {"bleu": "bleu_stats", NLL: "nll_stats"}


def nll_from_stats(stats) -> float:
    """Mean NLL per answer token of summed [total NLL, answer tokens]."""
    total, tokens = np.asarray(stats, dtype=float)
    return float(total / tokens)


_FROM_STATS = {"bleu": bleu_from_stats, NLL: nll_from_stats}


def per_sample_scores(predictions: list[str], references: list[str]) -> list[dict]:
    """Each answer's ROUGE-1/2/L, LLaMA-Factory's ROUGE and char-BLEU-4 (0-100) and its BLEU statistics."""
    rouge, lf, char, stats = (rouge_per_sample(predictions, references), lf_rouge_per_sample(predictions, references),
                              char_bleu4_per_sample(predictions, references), bleu_stats(predictions, references))
    return [{**{k: rouge[k][i] for k in ROUGE_KEYS}, **{k: lf[k][i] for k in LF_ROUGE_KEYS}, CHAR_BLEU: char[i],
             "bleu_stats": stats[i]} for i in range(len(predictions))]


HEALTH = ("ran_to_max_new_tokens", "repeated_4grams", "length_ratio", "broken_characters")


def repeated_ngram_share(text: str, n: int = 4) -> float:
    """The share of the answer's character n-grams (whitespace left out) that repeat an earlier
    one in the same answer: 0 for text without repeats, near 1 for a loop."""
    chars = [c for c in text if not c.isspace()]
    grams = [tuple(chars[i:i + n]) for i in range(len(chars) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def health_per_sample(prediction: str, reference: str, ran_out: bool) -> dict:
    """Whether an answer is well-formed text that ended: it ran to max_new_tokens (0/1), its share
    of repeated 4-grams, its length over the reference's (characters), whether it holds U+FFFD
    (bytes that are not UTF-8, from a model that emits partial characters)."""
    return {"ran_to_max_new_tokens": float(ran_out), "repeated_4grams": repeated_ngram_share(prediction),
            "length_ratio": len(prediction) / max(1, len(reference)), "broken_characters": float("\ufffd" in prediction)}


def health_summary(rows: list[dict]) -> dict[str, float]:
    """The run's generation health: the share of answers that ran to max_new_tokens, the mean
    share of repeated 4-grams, total answer length over total reference length, the share of
    answers with broken characters."""
    return {"ran_to_max_new_tokens": float(np.mean([r["ran_to_max_new_tokens"] for r in rows])),
            "repeated_4grams": float(np.mean([r["repeated_4grams"] for r in rows])),
            "length_ratio": float(sum(r["answer_chars"] for r in rows) / max(1, sum(r["reference_chars"] for r in rows))),
            "broken_characters": float(np.mean([r["broken_characters"] for r in rows]))}


def scores_matrix(runs: list[list[dict]]) -> dict[str, np.ndarray]:
    """Per-sample scores of one or more seeds of a run, as arrays: (seeds, questions) for each
    mean metric and (seeds, questions, statistics) for each corpus-level one; only the metrics
    the rows hold."""
    first = runs[0][0]
    table = {k: np.asarray([[row[k] for row in seed] for seed in runs], dtype=float) for k in MEAN_METRICS if k in first}
    for stats in STATS.values():
        if stats in first:
            table[stats] = np.asarray([[row[stats] for row in seed] for seed in runs], dtype=float)
    return table


def _metrics_of(table: dict[str, np.ndarray]) -> tuple[list[str], list[str]]:
    return [k for k in MEAN_METRICS if k in table], [k for k, s in STATS.items() if s in table]


def point_estimates(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each metric of each seed, (seeds,): means over questions; corpus-level metrics from summed statistics."""
    means, corpus = _metrics_of(table)
    values = {k: table[k].mean(axis=1) for k in means}
    for k in corpus:
        values[k] = np.asarray([_FROM_STATS[k](s.sum(axis=0)) for s in table[STATS[k]]])
    return values


def bootstrap_counts(groups: list[str], resamples: int, seed: int) -> np.ndarray:
    """(resamples, questions) times each test question is drawn: groups (a question's `group`, the
    built-in generator's phrasings of one answer, held out together by split) are drawn with
    replacement, each bringing all its questions. One matrix for every metric and run, so
    intervals and paired comparisons resample the same questions."""
    names, index = np.unique(np.asarray(groups), return_inverse=True)
    drawn = np.random.default_rng(seed).integers(0, len(names), size=(resamples, len(names)))
    group_counts = np.zeros((resamples, len(names)))
    np.add.at(group_counts, (np.arange(resamples)[:, None], drawn), 1)
    return group_counts[:, index]


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) times each of n ungrouped questions is drawn: `bootstrap_counts` with one group each."""
    return bootstrap_counts([str(i) for i in range(n)], resamples, seed)


def seed_weights(resamples: int, seeds: int, rng: np.random.Generator | None) -> np.ndarray:
    """(resamples, seeds): each seed's weight in each resample, its seeds drawn with replacement
    from `rng` (each draw weighs 1/seeds); one seed weighs 1 without drawing."""
    if seeds > 1 and rng is None:
        raise ValueError(f"{seeds} seeds are resampled too: pass rng, a numpy Generator")
    picks = np.zeros((resamples, seeds))
    drawn = rng.integers(0, seeds, size=(resamples, seeds)) if seeds > 1 else np.zeros((resamples, 1), dtype=int)
    np.add.at(picks, (np.arange(resamples)[:, None], drawn), 1 / seeds)
    return picks


def resampled(table: dict[str, np.ndarray], counts: np.ndarray, rng: np.random.Generator | None = None
              ) -> dict[str, np.ndarray]:
    """Each metric over the resamples of `counts` (bootstrap_counts), (resamples,). With several
    seeds this is a two-level bootstrap: each resample also draws the seeds with replacement (from
    `rng`) and averages them, so the interval holds the spread between training runs as well as
    between questions."""
    means, corpus = _metrics_of(table)
    picks = seed_weights(counts.shape[0], next(iter(table.values())).shape[0], rng)
    weights = counts / counts.sum(axis=1, keepdims=True)
    per_seed = {k: weights @ table[k].T for k in means}  # (resamples, seeds)
    for k in corpus:
        summed = np.einsum("rq,sqk->rsk", counts, table[STATS[k]])
        per_seed[k] = (summed[..., 0] / summed[..., 1] if k == NLL else
                       np.asarray([[_FROM_STATS[k](row) for row in seed_rows] for seed_rows in summed]))
    return {k: (v * picks).sum(axis=1) for k, v in per_seed.items()}


def interval(values: np.ndarray, confidence: float) -> dict[str, float]:
    """The percentile interval of resampled values."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"low": float(low), "high": float(high)}


def nll_summary(rows: list[dict], resamples: int, seed: int, confidence: float) -> dict:
    """A run's likelihood from per-answer rows ({"group", "nll_stats"}): NLL per answer token
    (total NLL over total answer tokens), perplexity, answer tokens, questions, and under
    `interval` the NLL's bootstrap interval over question groups (`bootstrap_counts` of seed)."""
    table = scores_matrix([rows])
    value = float(point_estimates(table)[NLL][0])
    draws = resampled(table, bootstrap_counts([r["group"] for r in rows], resamples, seed))[NLL]
    return {NLL: value, "perplexity": math.exp(value), "answer_tokens": int(sum(r["nll_stats"][1] for r in rows)),
            "n_test": len(rows), "interval": {"confidence": confidence, "resamples": resamples,
                                              NLL: interval(draws, confidence)}}


def paired_p_value(observed: float, resampled_differences: np.ndarray) -> float:
    """Two-sided p-value of a difference between two runs scored on the same resampled questions:
    how often the resampled difference, shifted to the null of no difference, is at least as far
    from zero as the one observed (Berg-Kirkpatrick et al. 2012), with the +1 that keeps it above 0."""
    extreme = np.abs(resampled_differences - observed) >= abs(observed)
    return float((1 + extreme.sum()) / (1 + len(resampled_differences)))
