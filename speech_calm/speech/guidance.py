"""What m_A's own CTC output offers the anchor's search: drafts and prefix scores.

m_A is trained with a CTC head, and its greedy CTC transcript is already close to what the composition writes.
Two uses, both through `core.decoding.generate`:

- **drafts**: the CTC transcript written as the anchor's target tokens (one per character with `char_targets`,
  else the tokenizer's pieces of the text) plus what ends it (<eos>, or the English marker's first token in a
  chained row). The anchor verifies it several tokens per forward; the output is what greedy search writes.
- **prefix scores**: `towers.ctc_prefix.CTCPrefixScorer` over m_A's posteriors, mixed in with
  `decoding.ctc_weight` (joint CTC/attention decoding): this changes the output, toward transcripts m_A's
  acoustics support.

Neither applies to a non-chained translation (English is not what m_A hears).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from speech_calm.speech.indic import SCRIPTS, language_script
from speech_calm.speech.model import SpeechModel
from speech_calm.towers.conformer import ctc_greedy_decode
from speech_calm.towers.ctc_prefix import CTCPrefixScorer
from speech_calm.towers.vocab import BLANK_ID, SPACE, UNK_ID, CharVocab

__all__ = ["ctc_transcripts", "draft_ids", "guides_task", "ctc_scorer", "token_labels"]


def guides_task(speech: SpeechModel, task: str) -> bool:
    """Whether m_A's transcript is (the start of) what `task`'s search writes: a transcript, or a chained
    translation (transcript, English marker, English)."""
    return task == "transcribe" or bool(speech.cfg.chain_translation)


def ctc_transcripts(logits: torch.Tensor, frames: torch.Tensor, vocab: CharVocab, script: str) -> list[str]:
    """Greedy CTC transcripts of logits (B, S, V) over `frames` (B,) real frames, written in `script`."""
    return [vocab.decode(ids, script) for ids in ctc_greedy_decode(logits, frames)]


def draft_ids(speech: SpeechModel, text: str, task: str) -> list[int]:
    """m_A's transcript `text` as the anchor's tokens for `task`, with the token that ends the transcript; []
    for a task m_A's transcript does not start."""
    if not guides_task(speech, task):
        return []
    text = " " + text.strip()
    if speech.cfg.char_targets:
        chars = [i for ch in text for i in speech.token_ids(ch)]
    else:
        chars = speech.token_ids(text)
    end = speech.transcript_end if speech.cfg.chain_translation else speech.eos_ids[0]
    return chars + [end]


def token_labels(speech: SpeechModel, vocab: CharVocab) -> dict[int, tuple[int, ...]]:
    """Anchor token id -> the CTC labels it writes, for every token made of the language's characters and
    spaces only (other tokens m_A cannot write). Computed once per model and vocabulary."""
    cache = speech.__dict__.setdefault("_ctc_token_labels", {})
    key = id(vocab)
    if key not in cache:
        script = {chr(c) for lo, hi in SCRIPTS[language_script(speech.language)] for c in range(lo, hi + 1)}
        known = script | {SPACE}
        table: dict[int, tuple[int, ...]] = {}
        for token, piece in enumerate(speech.pieces()):
            if piece and set(piece) <= known:
                labels = vocab.encode(piece)
                if UNK_ID not in labels:
                    table[token] = tuple(labels)
        cache[key] = table
    return cache[key]


def ctc_scorer(speech: SpeechModel, logits: torch.Tensor, frames: torch.Tensor, task: str,
               vocab: CharVocab) -> CTCPrefixScorer | None:
    """A prefix scorer of `task`'s outputs under m_A's CTC logits (B, S, V) with real `frames` (B,); None for a
    task m_A's transcript does not start."""
    if not guides_task(speech, task):
        return None
    ends: Sequence[int] = speech.eos_ids
    if speech.cfg.chain_translation:
        ends = (*ends, speech.transcript_end)
    space = vocab.encode(SPACE)[0]
    return CTCPrefixScorer(logits.float().log_softmax(-1), frames, token_labels(speech, vocab), ends,
                           space=None if space == UNK_ID else space, blank=BLANK_ID)
