"""Speech manifests to batches: utterances, splits, audio read once and kept, padded waveforms.

Speech manifests are JSONL (one utterance per line, see the README's "Data" section). Batches group utterances of
similar duration (`core.batch.bucket_batches`: little padding, an order that depends only on (seed, epoch),
so a resumed run sees the same batches as an uninterrupted one).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from speech_calm.files import read_jsonl
from speech_calm.speech.audio import load_audio


@dataclass(frozen=True)
class Utterance:
    """One line of a speech manifest, with the audio path made absolute."""

    id: str
    audio: str
    duration: float
    text: str
    language: str
    translation: str | None = None
    speaker: str = ""


def read_manifest(path: str | Path, languages: Sequence[str] | None = None) -> list[Utterance]:
    """Utterances of one JSONL manifest (optionally only `languages`); audio paths resolved next to it."""
    path = Path(path)
    wanted = {lang.lower() for lang in languages} if languages else None

    def parse(row: dict) -> Utterance | None:
        utt = Utterance(
            id=row["id"], audio=str((path.parent / row["audio"]).resolve()), duration=float(row["duration"]),
            text=row["text"], language=row.get("language", ""), translation=row.get("translation"),
            speaker=row.get("speaker", ""),
        )
        return utt if wanted is None or utt.language.lower() in wanted else None

    return read_jsonl(path, parse, "a valid manifest line",
                      f"prepare data first, e.g. python data_prep/vaani.py --source synthetic --out {path.parent}")


def read_split(dirs: Sequence[str | Path], split: str, languages: Sequence[str] | None = None) -> list[Utterance]:
    """The `split` manifests of several data directories, joined (e.g. Telugu plus other languages)."""
    utts = [u for d in dirs for u in read_manifest(Path(d) / f"{split}.jsonl", languages)]
    if not utts:
        raise ValueError(f"no {split} utterances in {list(map(str, dirs))} for languages {languages}")
    return utts


class AudioStore:
    """Reads utterance audio; keeps decoded audio in memory when the corpus is small (< `cache_hours`), so
    epochs after the first do not decode FLAC again."""

    def __init__(self, cache_hours: float = 4.0) -> None:
        self.cache_seconds = cache_hours * 3600
        self._cache: dict[str, np.ndarray] = {}
        self._cached_seconds = 0.0

    def load(self, utt: Utterance) -> np.ndarray:
        wave = self._cache.get(utt.audio)
        if wave is None:
            wave = load_audio(utt.audio)
            if self._cached_seconds + utt.duration <= self.cache_seconds:
                self._cache[utt.audio] = wave
                self._cached_seconds += utt.duration
        return wave

    def batch(self, utts: Sequence[Utterance]) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio of `utts`, right-padded: (B, T) float32 at 16 kHz and lengths (B,)."""
        return pad_waves([self.load(u) for u in utts])


def pad_waves(waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D waveforms into (B, T) float32 with lengths (B,)."""
    lens = torch.tensor([len(w) for w in waves])
    audio = torch.zeros(len(waves), int(lens.max()))
    for i, w in enumerate(waves):
        audio[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
    return audio, lens


def dev_subset(utts: list[Utterance], n: int) -> list[Utterance]:
    """About n dev utterances spread evenly over each language (fixed: the same at every evaluation)."""
    by_lang: dict[str, list[Utterance]] = defaultdict(list)
    for u in sorted(utts, key=lambda u: u.id):
        by_lang[u.language].append(u)
    per = max(1, n // max(1, len(by_lang)))
    out = []
    for lang_utts in by_lang.values():
        step = max(1, len(lang_utts) // per)
        out.extend(lang_utts[::step][:per])
    return out
