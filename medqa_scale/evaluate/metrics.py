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
MEAN_METRICS = (*ROUGE_KEYS, CHAR_BLEU)  # means of per-sample scores
METRICS = (*ROUGE_KEYS, "bleu", CHAR_BLEU)


def per_sample_scores(predictions: list[str], references: list[str]) -> list[dict]:
    """Each answer's ROUGE-1/2/L and char-BLEU-4 (0-100) and its BLEU statistics."""
    rouge, char, stats = (rouge_per_sample(predictions, references), char_bleu4_per_sample(predictions, references),
                          bleu_stats(predictions, references))
    return [{**{k: rouge[k][i] for k in ROUGE_KEYS}, CHAR_BLEU: char[i], "bleu_stats": stats[i]}
            for i in range(len(predictions))]


def scores_matrix(runs: list[list[dict]]) -> dict[str, np.ndarray]:
    """Per-sample scores of one or more seeds of a run, as arrays: (seeds, questions) for each
    mean metric and (seeds, questions, statistics) for BLEU."""
    table = {k: np.asarray([[row[k] for row in seed] for seed in runs], dtype=float) for k in MEAN_METRICS}
    table["bleu_stats"] = np.asarray([[row["bleu_stats"] for row in seed] for seed in runs], dtype=float)
    return table


def point_estimates(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each metric of each seed, (seeds,): means over questions; corpus BLEU from summed statistics."""
    values = {k: table[k].mean(axis=1) for k in MEAN_METRICS}
    values["bleu"] = np.asarray([bleu_from_stats(s.sum(axis=0)) for s in table["bleu_stats"]])
    return values


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) indices of test questions drawn with replacement: one matrix for every
    metric and run, so intervals and paired comparisons resample the same questions."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def resampled(table: dict[str, np.ndarray], questions: np.ndarray, rng: np.random.Generator | None = None
              ) -> dict[str, np.ndarray]:
    """Each metric over `questions` resamples, (resamples,). With several seeds, each resample
    also draws seeds with replacement (from `rng`) and averages them, so the interval holds the
    spread between training runs as well as between questions."""
    resamples, n = questions.shape
    counts = np.zeros((resamples, n))
    np.add.at(counts, (np.arange(resamples)[:, None], questions), 1)  # times each question is drawn
    seeds = table[MEAN_METRICS[0]].shape[0]
    picks = np.zeros((resamples, seeds))
    drawn = rng.integers(0, seeds, size=(resamples, seeds)) if seeds > 1 else np.zeros((resamples, 1), dtype=int)
    np.add.at(picks, (np.arange(resamples)[:, None], drawn), 1 / seeds)  # weight of each seed
    per_seed = {k: counts @ table[k].T / n for k in MEAN_METRICS}  # (resamples, seeds)
    per_seed["bleu"] = np.asarray([[bleu_from_stats(row) for row in counts @ table["bleu_stats"][s]]
                                   for s in range(seeds)]).T
    return {k: (v * picks).sum(axis=1) for k, v in per_seed.items()}


def interval(values: np.ndarray, confidence: float) -> dict[str, float]:
    """The percentile interval of resampled values."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"low": float(low), "high": float(high)}


def paired_p_value(observed: float, resampled_differences: np.ndarray) -> float:
    """Two-sided p-value of a difference between two runs scored on the same resampled questions:
    how often the resampled difference, shifted to the null of no difference, is at least as far
    from zero as the one observed (Berg-Kirkpatrick et al. 2012), with the +1 that keeps it above 0."""
    extreme = np.abs(resampled_differences - observed) >= abs(observed)
    return float((1 + extreme.sum()) / (1 + len(resampled_differences)))
