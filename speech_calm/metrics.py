"""Scores of text against references: CER and WER (jiwer), BLEU and chrF++ (sacrebleu), corpus-level, 0-100.

CER comes first for Telugu (agglutinative: one long word carries what English says in several, so WER
punishes a single wrong suffix as a whole word). An empty reference has no error rate and is left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import jiwer
import sacrebleu


def _pairs(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    kept = [(r, h) for r, h in zip(refs, hyps) if r.strip()]  # an empty reference has no error rate
    return [r for r, _ in kept], [h for _, h in kept]


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Character error rate in percent over the corpus (edits / reference characters, spaces included)."""
    r, h = _pairs(refs, hyps)
    return 100.0 * jiwer.cer(r, h) if r else float("nan")


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Word error rate in percent over the corpus."""
    r, h = _pairs(refs, hyps)
    return 100.0 * jiwer.wer(r, h) if r else float("nan")


def bleu(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation), 0–100."""
    r, h = _pairs(refs, hyps)
    return sacrebleu.corpus_bleu(h, [r]).score if r else float("nan")


def chrf(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus chrF++ (character n-grams plus word bigrams, sacrebleu word_order=2), 0–100."""
    r, h = _pairs(refs, hyps)
    return sacrebleu.corpus_chrf(h, [r], word_order=2).score if r else float("nan")


def translation_scores(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, float]:
    """BLEU and chrF++ for translations."""
    return {"bleu": bleu(refs, hyps), "chrf": chrf(refs, hyps)}
