"""Scores of transcripts: CER and WER (`speech_calm.metrics`) and script fidelity, the share of output letters
written in the expected script (Whisper-style models often answer Telugu speech in Latin letters).
"""

from __future__ import annotations

from collections.abc import Sequence

from speech_calm.metrics import cer, wer
from speech_calm.speech.indic import script_fraction


def script_fidelity(hyps: Sequence[str], script: str) -> float:
    """Percent of the letters (and vowel signs) of all hypotheses in `script` (e.g. "telugu", "latin", or a
    language name); 0 when there are no letters at all."""
    return 100.0 * script_fraction(" ".join(hyps), script)


def transcript_scores(refs: Sequence[str], hyps: Sequence[str], script: str | None = None) -> dict[str, float]:
    """CER, WER (and script fidelity when `script` is given) for transcripts."""
    out = {"cer": cer(refs, hyps), "wer": wer(refs, hyps)}
    if script:
        out["script_fidelity"] = script_fidelity(hyps, script)
    return out
