"""Answer-quality metrics, as pure functions of predictions and references."""

from __future__ import annotations

import logging

import jieba
import sacrebleu
from rouge_chinese import Rouge

jieba.setLogLevel(logging.WARNING)

ROUGE_KEYS = ("rouge-1", "rouge-2", "rouge-l")


def segment(text: str) -> str:
    """jieba words joined by spaces, the input rouge-chinese expects."""
    return " ".join(w for w in jieba.cut(text) if w.strip())


def rouge_zh(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F1 over samples on jieba-segmented text, scaled to 0-100.

    An empty prediction scores 0 (rouge-chinese refuses empty hypotheses).
    """
    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need equal, non-zero numbers of predictions and references, got {len(predictions)} and {len(references)}")
    totals = dict.fromkeys(ROUGE_KEYS, 0.0)
    pairs = [(segment(p), segment(r)) for p, r in zip(predictions, references)]
    scorable = [(p, r) for p, r in pairs if p and r]
    if scorable:
        scores = Rouge().get_scores([p for p, _ in scorable], [r for _, r in scorable])
        for s in scores:
            for key in ROUGE_KEYS:
                totals[key] += s[key]["f"]
    return {key: 100 * totals[key] / len(pairs) for key in ROUGE_KEYS}


def bleu_zh(predictions: list[str], references: list[str]) -> tuple[float, str]:
    """Corpus BLEU with sacrebleu's Chinese tokenizer, and its signature for the record."""
    bleu = sacrebleu.metrics.BLEU(tokenize="zh")
    score = bleu.corpus_score(predictions, [references])
    return score.score, str(bleu.get_signature())
