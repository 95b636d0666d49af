"""Manifests to batches: utterances, duration-bucketed batches, prompts and label masking.

Speech manifests are JSONL (one utterance per line, see DESIGN.md "Data"). Batches group utterances of
similar duration (little padding), in an order that depends only on (seed, epoch), so a resumed run sees the
same batches as an uninterrupted one, and each DDP rank takes every world-th batch.

Language-model rows are left-padded (`prompt + target`, targets flush right) so that training and generation
share one layout and the loss needs logits for the last `T_target + 1` positions only (`logits_to_keep`):
with Gemma's 262k vocabulary the LM head would otherwise dominate the step.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from speech_calm.core.batch import bucket_batches
from speech_calm.files import read_jsonl
from speech_calm.speech.audio import load_audio, resample


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


def task_batches(
    tasks: Sequence[str],
    durations: Sequence[float],
    batch_size: int,
    max_batch_seconds: float | None,
    seed: int,
    epoch: int,
    repeats: Mapping[str, int] | None = None,
    by_task: bool = False,
) -> list[list[int]]:
    """`bucket_batches` for rows of several tasks (row k: `tasks[k]`, `durations[k]`).

    repeats: rows of a task per epoch (default 1). A task repeated R times joins R passes over the rows, each
    bucketed apart, so one row's copies fall in different batches. by_task: each task is bucketed alone, so a
    short target (a translation) is never padded to a long one (a transcript). Batches of all passes and
    tasks are shuffled together. With neither, exactly `bucket_batches`. Deterministic for (seed, epoch).
    """
    repeats = repeats or {}
    passes = max([1, *repeats.values()])
    out: list[list[int]] = []
    for r in range(passes):
        pool = [k for k, task in enumerate(tasks) if repeats.get(task, 1) > r]
        names = sorted({tasks[k] for k in pool}) if by_task else [None]
        for name in names:
            rows = [k for k in pool if name is None or tasks[k] == name]
            groups = bucket_batches([durations[k] for k in rows], batch_size, max_batch_seconds,
                                    seed + 7919 * r, epoch)  # each pass its own shuffle
            out += [[rows[j] for j in g] for g in groups]
    if passes > 1 or by_task:
        random.Random(seed * 1_000_003 + epoch).shuffle(out)  # passes and tasks interleaved
    return out


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

    def batch(self, utts: Sequence[Utterance], speed: Sequence[float] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio of `utts`, right-padded: (B, T) float32 at 16 kHz and lengths (B,). `speed`: optional
        speed-perturbation factors (1.1 = 10% faster and higher), applied by resampling."""
        waves = []
        for i, u in enumerate(utts):
            wave = self.load(u)
            if speed is not None and speed[i] != 1.0:
                wave = resample(wave, round(16000 * speed[i]), 16000)
            waves.append(wave)
        return pad_waves(waves)


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
