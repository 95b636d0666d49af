"""Word timestamps from m_A's CTC alignment, against a known timeline."""

from __future__ import annotations

import torch

from speech_calm.speech.words import word_times
from speech_calm.towers.vocab import CharVocab


def posteriors(vocab: CharVocab, timeline: list[tuple[str, int, int]], frames: int) -> torch.Tensor:
    """(frames, V) log-probabilities that hear each (character, first frame, end frame) of `timeline` and
    blank elsewhere, with a little noise."""
    torch.manual_seed(0)
    logits = torch.randn(frames, len(vocab)) * 0.1
    logits[:, 0] += 5.0  # blank
    for ch, start, end in timeline:
        logits[start:end, vocab.encode(ch)[0]] += 10.0
    return logits.log_softmax(-1)


def test_words_start_and_end_where_their_characters_are_heard() -> None:
    vocab = CharVocab.build(["అమ్మ పాలు"])
    text = "అమ్మ పాలు"
    # 20 ms frames: అ 0.10-0.16 s, మ 0.20-0.24, ్ 0.26, మ 0.30-0.34; space 0.40; పా లు from 0.60 to 0.90
    timeline = [("అ", 5, 8), ("మ", 10, 12), ("్", 13, 14), ("మ", 15, 17), (" ", 20, 22), ("ప", 30, 32),
                ("ా", 33, 34), ("ల", 38, 40), ("ు", 42, 45)]
    words = word_times(posteriors(vocab, timeline, 60), 0.02, vocab.encode(text), text)
    assert [w["word"] for w in words] == ["అమ్మ", "పాలు"]
    assert words[0]["start"] == 0.10 and words[0]["end"] == 0.34
    assert words[1]["start"] == 0.60 and words[1]["end"] == 0.90


def test_a_transcript_too_long_for_its_frames_gives_no_words() -> None:
    vocab = CharVocab.build(["అమ్మ"])
    assert word_times(torch.zeros(3, len(vocab)).log_softmax(-1), 0.02, vocab.encode("అమ్మ అమ్మ"), "అమ్మ అమ్మ") == []
    assert word_times(torch.zeros(9, len(vocab)).log_softmax(-1), 0.02, [], "") == []
