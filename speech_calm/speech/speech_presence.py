"""No speech, no text: how likely a segment holds no speech, and how sure m_A is of what it heard.

A composed model writes something for any audio: 10 s of noise gave a line of Telugu letters and "There are
two dogs." Two independent witnesses say whether a segment is speech:

- Silero VAD (`speech_calm.speech.vad`): its mean speech probability over the segment, `vad_speech`, an
  acoustic verdict that knows nothing of the language (None when the energy detector cut the segment);
- m_A's CTC head: a CTC model's blank label wins nearly every frame of audio it hears no characters in, so
  the characters per second of its greedy CTC path (runs of one non-blank label; what the blank posteriors
  leave) measure how much it heard. Per second, not per frame, so that towers of different frame rates
  compare: Telugu speech runs at 10-15 characters a second (spaces included), noise and music at 0-2.

Each gives a speech estimate in [0, 1]: `vad_speech`, and `min(1, rate / SPEECH_RATE)`; the segment is
speech only if every available witness says so, `no_speech_prob = 1 - product of the estimates` (a noisy-OR
of "no speech"). Not their mean: each witness can be fooled into hearing speech, but rarely into missing it.
The energy detector calls anything loud speech, and m_A's CTC head, trained on speech only, never learnt to
stay blank on noise: our synthetic-corpus m_A (400 steps, dev CER 12.6%) heard 11-14 characters a second in
white and pink noise, 10-16 in chords and 4-8 in hum (speech: 6-11), while Silero gave them all 0.02 or less. So either witness may silence a segment, and neither can vouch for it alone. Above
`SpeechGate.no_speech_threshold` the segment gives no text for any task and a warning.

`confidence` is the mean natural-log posterior of m_A's greedy CTC path over its non-blank frames (how sure
m_A is of the characters it heard; None when it heard none). Below `SpeechGate.low_confidence` the segment is
flagged (`low_confidence` in JSON, a "[?] " prefix in SRT/VTT). It is m_A's confidence, not the anchor's: the
decoder's own log-probabilities would score the text itself and are the natural replacement once search
returns them.

The thresholds were chosen on the synthetic corpus's dev split (clean, and in pink noise at 10 and 0 dB SNR)
against noise, chords and hum, never on test numbers (`benchmarks/vad_boundaries.py DEV.jsonl --ctc-model
M_A_DIR` prints the table): `no_speech_prob` was 0.13-0.35 on dev speech at every SNR and 0.98-1.00 on
non-speech, so 0.6 (whisper's value) lies inside the gap; `confidence` was -0.29 at worst on clean dev speech
(-0.44 at 0 dB SNR) and -0.37 at best on non-speech, so -0.35 flags no clean clip and the noisiest ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from speech_calm.towers.vocab import BLANK_ID

__all__ = ["LOW_CONFIDENCE", "NO_SPEECH_THRESHOLD", "SPEECH_RATE", "Presence", "SpeechGate", "ctc_evidence",
           "no_speech_probability"]

SPEECH_RATE = 5.0  # characters per second of m_A's CTC path at which a segment counts as fully speech

NO_SPEECH_THRESHOLD = 0.6  # no_speech_prob above this: no text

LOW_CONFIDENCE = -0.35  # mean log posterior of m_A's CTC characters below this: flagged


@dataclass(frozen=True)
class SpeechGate:
    """When a segment gives no text, and when it is flagged.

    no_speech_threshold: a segment whose `no_speech_prob` is above this gives no text (1.0: never).
    low_confidence: a segment whose `confidence` is below this is flagged `low_confidence` (-inf: never).
    """

    no_speech_threshold: float = NO_SPEECH_THRESHOLD
    low_confidence: float = LOW_CONFIDENCE

    def __post_init__(self) -> None:
        if not 0 <= self.no_speech_threshold <= 1:
            raise ValueError(f"no_speech_threshold must be between 0 and 1 (1 = off), got {self.no_speech_threshold}")
        if self.low_confidence > 0:
            raise ValueError(f"low_confidence is a mean log-probability, <= 0, got {self.low_confidence}")


@dataclass(frozen=True)
class Presence:
    """One segment's evidence of speech (see the module's docstring). Any field may be None: no witness."""

    no_speech_prob: float | None
    confidence: float | None  # mean log posterior of m_A's CTC characters
    vad_speech: float | None = None  # Silero's mean speech probability
    ctc_rate: float | None = None  # characters per second on m_A's greedy CTC path

    def silenced(self, gate: SpeechGate) -> bool:
        """No speech here: the segment's outputs are dropped."""
        return self.no_speech_prob is not None and self.no_speech_prob > gate.no_speech_threshold

    def low(self, gate: SpeechGate) -> bool:
        """The characters m_A heard are uncertain."""
        return self.confidence is not None and self.confidence < gate.low_confidence


def ctc_evidence(log_probs: torch.Tensor, seconds: float, blank: int = BLANK_ID) -> tuple[float, float | None]:
    """(characters per second, confidence) of m_A's greedy CTC path over one segment.

    log_probs: (S, V) CTC log-probabilities of the segment's S real frames; seconds: the segment's duration.
    Characters are runs of one non-blank label; confidence is the mean of the path's log posterior over its
    non-blank frames (None when every frame is blank).
    """
    if log_probs.shape[0] == 0:
        return 0.0, None
    best, labels = log_probs.float().max(-1)  # (S,), (S,)
    voiced = labels != blank
    starts = voiced.clone()
    starts[1:] &= labels[1:] != labels[:-1]  # a character is a run of one label, a repeat needs a blank between
    rate = float(starts.sum()) / max(seconds, 1e-6)
    confidence = float(best[voiced].mean()) if bool(voiced.any()) else None
    return rate, confidence


def no_speech_probability(vad_speech: float | None, ctc_rate: float | None) -> float | None:
    """`1 - product` of the available speech estimates, `vad_speech` and `min(1, ctc_rate / SPEECH_RATE)`;
    None when neither witness is available."""
    if vad_speech is None and ctc_rate is None:
        return None
    speech = 1.0
    if vad_speech is not None:
        speech *= min(1.0, max(0.0, vad_speech))
    if ctc_rate is not None:
        speech *= min(1.0, ctc_rate / SPEECH_RATE)
    return 1.0 - speech
