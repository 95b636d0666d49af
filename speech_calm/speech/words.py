"""Word timestamps from m_A's CTC alignment: when each word of a transcript was spoken.

The composed model writes the transcript; m_A, a CTC model, says frame by frame which character it hears.
Forcing the transcript's characters through m_A's CTC posteriors (Viterbi, `torchaudio.functional.
forced_align`) gives each character the frames it spans, and a word spans its first character's first frame to
its last character's last frame. A CTC m_A gives this directly, where a Whisper-style model needs dynamic time
warping over its cross-attention.

    words = word_times(log_probs, frame_seconds, vocab.encode(text), text)   # [{"word", "start", "end"}]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from speech_calm.towers.vocab import BLANK_ID, SPACE


def word_times(log_probs: torch.Tensor, frame_seconds: float, ids: Sequence[int], text: str) -> list[dict[str, Any]]:
    """[{"word", "start", "end"}] (seconds from the first frame) of the words of `text`.

    log_probs: (S, V) m_A's CTC log-probabilities over one segment's S real frames; frame_seconds: the time one
    frame stands for; ids: `text`'s characters as CTC labels (one per character, spaces included). A transcript
    that cannot fit the frames (more labels than CTC can place) gives no words.
    """
    import torchaudio.functional as AF

    if len(ids) != len(text):
        raise ValueError(f"{len(ids)} labels for {len(text)} characters: give one label per character")
    keep = list(range(len(text)))  # spaces too: m_A's CTC writes them between words
    if not text.strip() or log_probs.shape[0] == 0:
        return []
    targets = torch.tensor([list(ids)], dtype=torch.int32)
    repeats = sum(a == b for a, b in zip(targets[0, :-1].tolist(), targets[0, 1:].tolist()))
    if targets.shape[1] + repeats > log_probs.shape[0]:
        return []  # CTC needs a frame per label and a blank between repeated labels
    path, _ = AF.forced_align(log_probs[None].float().cpu(), targets, blank=BLANK_ID)
    spans = AF.merge_tokens(path[0], torch.zeros(path.shape[1]), blank=BLANK_ID)  # one span per label, in order
    frames = dict(zip(keep, spans))  # character index -> its frames
    words, start = [], 0
    for part in text.split(SPACE):
        chars = [i for i in range(start, start + len(part)) if i in frames]
        if chars:
            words.append({"word": part, "start": round(frames[chars[0]].start * frame_seconds, 3),
                          "end": round(frames[chars[-1]].end * frame_seconds, 3)})
        start += len(part) + 1
    return words
