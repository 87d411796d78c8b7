"""Answer-quality metrics, as pure functions of predictions and references, with bootstrap
confidence intervals from resampling the test questions."""

from __future__ import annotations

import logging

import jieba
import numpy as np
import sacrebleu
from rouge_chinese import Rouge

jieba.setLogLevel(logging.WARNING)

ROUGE_KEYS = ("rouge-1", "rouge-2", "rouge-l")
CHAR_BLEU = "char-bleu-4"  # LLaMA-Factory's bleu-4


def segment(text: str) -> str:
    """jieba words joined by spaces, the input rouge-chinese expects."""
    return " ".join(w for w in jieba.cut(text) if w.strip())


def rouge_per_sample(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """ROUGE-1/2/L F1 of each sample on jieba-segmented text, 0-100; an empty prediction scores 0
    (rouge-chinese refuses empty hypotheses)."""
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need equal, non-zero numbers of predictions and references, got {len(predictions)} and {len(references)}")
    per_sample = {key: [0.0] * len(predictions) for key in ROUGE_KEYS}
    pairs = [(segment(p), segment(r)) for p, r in zip(predictions, references)]
    scorable = [i for i, (p, r) in enumerate(pairs) if p and r]
    if scorable:
        scores = Rouge().get_scores([pairs[i][0] for i in scorable], [pairs[i][1] for i in scorable])
        for i, s in zip(scorable, scores):
            for key in ROUGE_KEYS:
                per_sample[key][i] = 100 * s[key]["f"]
    return per_sample


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
    return [100 * sentence_bleu([list(r)], list(p), smoothing_function=smooth) if p.strip() else 0.0
            for p, r in zip(predictions, references)]


def char_bleu4(predictions: list[str], references: list[str]) -> float:
    return float(np.mean(char_bleu4_per_sample(predictions, references)))


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) indices of test questions drawn with replacement: one matrix for every
    metric and run, so intervals and paired comparisons resample the same questions."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def interval(values: np.ndarray, confidence: float) -> dict[str, float]:
    """The percentile interval of resampled values."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"low": float(low), "high": float(high)}


def bootstrap_intervals(predictions: list[str], references: list[str], indices: np.ndarray,
                        confidence: float) -> dict[str, dict[str, float]]:
    """Percentile intervals of ROUGE-1/2/L and char-BLEU-4 (means of resampled per-sample
    scores) and of corpus BLEU (recomputed from the resampled sentences' n-gram statistics)."""
    per_sample = {**rouge_per_sample(predictions, references), CHAR_BLEU: char_bleu4_per_sample(predictions, references)}
    intervals = {key: interval(np.asarray(values)[indices].mean(axis=1), confidence) for key, values in per_sample.items()}
    bleu = sacrebleu.metrics.BLEU(tokenize="zh")
    # sacrebleu's own bootstrap seeds from an environment variable and reports mean +- 1.96 sd; its
    # sentence statistics, summed over each resample, give the same BLEU as corpus_score would.
    stats = np.asarray(bleu._extract_corpus_statistics(predictions, [references]))
    resampled = [bleu._compute_score_from_stats(stats[row].sum(axis=0).tolist()).score for row in indices]
    intervals["bleu"] = interval(np.asarray(resampled), confidence)
    return intervals
