"""Transcripts and translations of audio files of any common format and any length: the `Transcriber` that
`speech_calm.load` returns and `python -m speech_calm.infer` drives.

    model = speech_calm.load("runs/telugu")
    result = model.transcribe("call.mp3", task="both")
    result["text"], result["translation"], result["segments"][0]   # {"start", "end", "text", "translation"}

What one call does (whisper's transcribe.py is the model):

1. read each file (whatever libsndfile decodes, or ffmpeg when on PATH: WAV, FLAC, MP3, OGG/Opus, M4A, ...;
   any sample rate and channel count) as 16 kHz mono (`speech_calm.speech.audio`);
2. cut it at pauses into segments of at most `max_segment` seconds (`speech_calm.speech.segment`; Silero VAD by
   default): long audio is never truncated, only what is not speech is left out;
3. pool the segments of several files, sort them by length and decode them in batches: m_A once per batch,
   then one search per task; tokens are capped per second of audio (`max_tokens_per_second`), and a segment
   whose output loops ("the the the ...") is decoded again with n-gram blocking;
4. judge each segment's speech (`speech_calm.speech.speech_presence`: Silero's speech probability and m_A's
   CTC path, one more m_A forward per batch): a segment with no speech gives no text and a warning, one whose
   characters m_A is unsure of is flagged `low_confidence`;
5. put the texts back in file order with their timestamps; results come out file by file, in input order.

A file that cannot be used (missing, unreadable, empty, silent, too short) becomes a per-file error with a
message that says what is wrong; the other files go on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from speech_calm.core.batch import chunks
from speech_calm.core.decoding import DecodeStats, generate
from speech_calm.core.tower import TowerOutput
from speech_calm.speech.audio import (
    AUDIO_EXTENSIONS,
    SAMPLE_RATE,
    AudioError,
    load_audio,
)
from speech_calm.speech.config import DecodeConfig
from speech_calm.speech.data import pad_waves
from speech_calm.speech.guidance import ctc_scorer, ctc_transcripts, draft_ids, guides_task
from speech_calm.speech.indic import language_script
from speech_calm.speech.model import TASKS, TOWER, SpeechModel, token_caps
from speech_calm.speech.repetition import loop_size, looped
from speech_calm.speech.segment import Segment, SegmentOptions, find_segments
from speech_calm.speech.speech_presence import Presence, SpeechGate, ctc_evidence, no_speech_probability
from speech_calm.towers.ctc import ctc_outputs

__all__ = ["Decoded", "Encoded", "FileResult", "Transcriber"]

TASK_CHOICES = ("transcribe", "translate", "both")

POOL_BATCHES = 4  # segments are pooled across files until this many batches are ready, then sorted and decoded

FALLBACK_NO_REPEAT_NGRAM = 3  # n-gram blocking for a segment whose first decoding looped

MIN_AUDIO_SECONDS = 0.1  # shorter files carry no word


@dataclass
class Decoded:
    """One segment's output for one task."""

    text: str
    tokens: list[int]
    cap: int  # the token cap this segment had (from its duration)
    fallback: int = 0  # the first search looped: n of the n-gram blocking of the second search (0 = none)
    alignment: np.ndarray | None = None  # (tokens, frames) cross-attention, when asked for
    words: list[dict[str, Any]] | None = None  # transcripts, when asked for: [{"word", "start", "end"}] (s)

    @property
    def capped(self) -> bool:
        """Stopped at the token cap rather than at end-of-sequence: the text may be cut."""
        return len(self.tokens) >= self.cap


@dataclass
class FileResult:
    """One input file: its segments and their outputs, or the error that stopped it."""

    path: str
    tasks: tuple[str, ...]
    language: str
    duration: float = 0.0
    segments: list[Segment] = field(default_factory=list)
    outputs: list[dict[str, Decoded]] = field(default_factory=list)  # per segment: task → output
    error: str | None = None
    wave: np.ndarray | None = field(default=None, repr=False)  # 16 kHz mono while it waits to be decoded
    presence: list[Presence] = field(default_factory=list)  # per segment: its evidence of speech
    gate: SpeechGate = field(default_factory=SpeechGate)  # what silences and flags a segment

    @property
    def ok(self) -> bool:
        return self.error is None

    def warnings(self) -> list[str]:
        """What a reader of the output should know: no speech found, segments without speech (no text),
        segments cut by the token cap, loops decoded again."""
        notes = []
        if self.ok and not self.segments:
            notes.append("Silero VAD heard no speech in this recording; no text (noise, music or silence?)")
        for k, (seg, out) in enumerate(zip(self.segments, self.outputs)):
            where = f"{seg.start_seconds:.1f}-{seg.end_seconds:.1f} s"
            p = self.presence[k] if k < len(self.presence) else None
            if p is not None and p.silenced(self.gate):
                heard = [f"Silero speech probability {p.vad_speech:.2f}" if p.vad_speech is not None else "",
                         f"m_A heard {p.ctc_rate:.1f} characters/s" if p.ctc_rate is not None else ""]
                notes.append(f"{where}: no speech (no-speech probability {p.no_speech_prob:.2f} > "
                             f"{self.gate.no_speech_threshold:g}: {', '.join(h for h in heard if h)}); no text")
                continue
            for task, dec in out.items():
                if dec.fallback:
                    notes.append(f"{where}: the {task} output repeated itself; decoded again with "
                                 f"no_repeat_ngram_size={dec.fallback}")
                if dec.capped:
                    notes.append(f"{where}: the {task} output stopped at the cap of {dec.cap} tokens for this "
                                 f"segment's length; it may be cut (noise, or raise --max-tokens-per-second)")
        return notes

    def to_dict(self) -> dict[str, Any]:
        """`{"path", "duration", "language", "task", "text", "translation", "segments", "warnings"}`; a failed
        file has "error" and no segments. A task that was not run gives None."""
        keys = {"transcribe": "text", "translate": "translation"}
        result: dict[str, Any] = {"path": self.path, "duration": round(self.duration, 3), "language": self.language,
                                  "task": "both" if len(self.tasks) == 2 else self.tasks[0]}
        if self.error is not None:
            return {**result, "error": self.error, "text": None, "translation": None, "segments": []}
        segments = []
        for k, (seg, out) in enumerate(zip(self.segments, self.outputs)):
            item: dict[str, Any] = {"start": round(seg.start_seconds, 3), "end": round(seg.end_seconds, 3)}
            for task, key in keys.items():
                item[key] = out[task].text if task in out else None
            words = out["transcribe"].words if "transcribe" in out else None
            if words is not None:  # times within the file
                item["words"] = [{**w, "start": round(seg.start_seconds + w["start"], 3),
                                  "end": round(seg.start_seconds + w["end"], 3)} for w in words]
            p = self.presence[k] if k < len(self.presence) else None
            if p is not None:
                item["no_speech_prob"] = None if p.no_speech_prob is None else round(p.no_speech_prob, 3)
                item["confidence"] = None if p.confidence is None else round(p.confidence, 3)
                item["low_confidence"] = p.low(self.gate) and not p.silenced(self.gate)
            segments.append(item)
        for task, key in keys.items():
            result[key] = " ".join(s[key] for s in segments if s[key]) if task in self.tasks else None
        return {**result, "segments": segments, "warnings": self.warnings()}


def tasks_of(task: str) -> tuple[str, ...]:
    """"both" → ("transcribe", "translate"); one task → itself."""
    if task not in TASK_CHOICES:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASK_CHOICES)}")
    return TASKS if task == "both" else (task,)


def resolve_device(name: str) -> torch.device:
    """"auto" = CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu or auto")
    return torch.device(name)


class Transcriber:
    """A trained run ready to transcribe and translate audio (see `load`).

    Attributes: speech (the `SpeechModel`), recipe (the run's resolved recipe), run_dir, dtype (the anchor's),
    decoding (the recipe's `DecodeConfig`, the default for every call).
    """

    def __init__(self, speech: SpeechModel, recipe: Any, run_dir: Path, dtype: torch.dtype) -> None:
        self.speech = speech
        self.recipe = recipe
        self.run_dir = run_dir
        self.dtype = dtype
        self.language = recipe.compose.language
        self.decoding = recipe.compose.decoding
        self.min_samples = max(int(getattr(speech.tower, "min_samples", 0)), int(MIN_AUDIO_SECONDS * SAMPLE_RATE))
        self.stats = DecodeStats()  # what the searches cost, summed over calls (benchmarks reset it)

    @property
    def device(self) -> torch.device:
        return self.speech.device

    def _autocast(self) -> contextlib.AbstractContextManager:
        # a bf16/fp16 anchor with fp32 bridges: autocast gives every matmul one dtype (as in training)
        if self.dtype in (torch.bfloat16, torch.float16):
            return torch.autocast(self.device.type, dtype=self.dtype)
        return contextlib.nullcontext()

    def decoding_for(self, longest_seconds: float, **overrides: Any) -> DecodeConfig:
        """The recipe's decoding settings with `overrides` (DecodeConfig field names); unless max_new_tokens is
        overridden, it is raised so that the per-second cap, not a fixed count, bounds `longest_seconds`."""
        names = {f.name for f in fields(DecodeConfig)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(f"unknown decoding option(s) {unknown}; valid: {', '.join(sorted(names))}")
        d = replace(self.decoding, **{k: v for k, v in overrides.items() if v is not None})
        if d.beam_size < 1 or d.max_tokens_per_second <= 0 or d.repetition_penalty <= 0 or d.no_repeat_ngram_size < 0:
            raise ValueError(f"invalid decoding settings: {d}")
        if not 0.0 <= d.ctc_weight < 1.0:
            raise ValueError(f"ctc_weight mixes m_A's CTC scores with the anchor's: give a weight in [0, 1), "
                             f"not {d.ctc_weight}")
        if overrides.get("max_new_tokens") is None:
            longest = max(self.speech.task_caps(t, token_caps([longest_seconds], d))[0] for t in TASKS)
            d = replace(d, max_new_tokens=max(d.max_new_tokens, longest))
        return d

    # ------------------------------------------------------------------------------------------ batches

    def _search(self, task: str, states: TowerOutput, caps: list[int], d: DecodeConfig,
                guide: _Guide | None = None, rows: list[int] | None = None) -> list[list[int]]:
        """One search for `task` over m_A's `states`, with the drafts and CTC scores of `guide`'s `rows` (default
        all) when the settings `d` ask for them."""
        n = states.mask.shape[0]
        ids = torch.tensor([self.speech.prompt_ids(task)] * n, device=self.device)
        options = self.speech.options(d, task)
        drafts, scorer = None, None
        if guide is not None:
            rows = rows if rows is not None else list(range(n))
            if d.draft and options.beam_size == 1:
                drafts = guide.drafts(task, rows)
            if options.scorer_weight > 0:
                scorer = guide.scorer(task, rows)
        seqs = generate(self.speech.model, ids, None, None, options, max_new_tokens=caps,
                        tower_outputs={TOWER: states}, drafts=drafts, scorer=scorer, stats=self.stats)
        if task == "translate" and self.speech.zero_shot_translation:  # trained on transcripts: English unasked
            seqs = self.speech.continue_translation(seqs, {TOWER: states}, caps, d)
        return seqs

    def _guide(self, logits: torch.Tensor | None, frames: torch.Tensor | None, d: DecodeConfig) -> _Guide | None:
        """m_A's CTC output for the searches (`speech.guidance`), when the settings use it and m_A has a head."""
        tower = getattr(self.speech.tower, "tower", self.speech.tower)  # under CTC compression: the tower read
        vocab = getattr(tower, "vocab", None)
        if logits is None or frames is None or vocab is None or not (d.draft or d.ctc_weight > 0):
            return None
        return _Guide(self.speech, logits, frames, vocab)

    def ctc_model(self) -> Any:
        """m_A with its CTC head (`ctc_logits`, `vocab`), for word timestamps; a clear error for a tower
        without one."""
        tower = getattr(self.speech.tower, "tower", self.speech.tower)  # under CTC compression: the tower read
        if getattr(tower, "ctc_head", None) is None or getattr(tower, "vocab", None) is None:
            raise ValueError(f"word timestamps come from m_A's CTC alignment, and this run's m_A "
                             f"({type(tower).__name__}) has no CTC head here; train m_A with the encoder stage")
        return tower

    def _words(self, audio: torch.Tensor, lens: torch.Tensor, results: list[dict[str, Decoded]],
               ctc_logits: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Each transcript's word timestamps (`Decoded.words`, seconds from the segment's start), from m_A's CTC
        logits (B, S, V) and frames (B,) when already computed."""
        from speech_calm.speech.words import word_times

        ctc = self.ctc_model()
        if ctc_logits is None:
            ctc_logits = ctc.ctc_logits(audio.to(self.device), lens.to(self.device))
        logits, frames = ctc_logits
        log_probs = logits.float().log_softmax(-1)
        for i, result in enumerate(results):
            text, n = result["transcribe"].text, int(frames[i])
            seconds = float(lens[i]) / SAMPLE_RATE / max(n, 1)  # one frame's time (the frames span the audio)
            result["transcribe"].words = word_times(log_probs[i, :n], seconds, ctc.vocab.encode(text), text)

    @torch.no_grad()
    @torch.no_grad()
    def encode(self, waves: Sequence[np.ndarray]) -> Encoded:
        """m_A once over a batch of 16 kHz mono waveforms: its states as the bridges read them and its CTC
        logits, which decoding, the speech gate and m_A's own transcripts all read."""
        audio, lens = pad_waves(waves)  # (B, T), (B,)
        with self._autocast():
            states, logits, frames = ctc_outputs(self.speech.tower, audio.to(self.device), lens.to(self.device))
        return Encoded(audio, lens, states, logits, frames)

    def presence(self, waves: Sequence[np.ndarray], segments: Sequence[Segment],
                 encoded: Encoded | None = None) -> list[Presence]:
        """Each segment's evidence of speech (`speech_presence`): Silero's probability that `segments` carry
        from segmentation, and m_A's CTC path over `waves` (their audio; from `encoded` when given, else one m_A
        forward for the batch; left out for an m_A without a CTC head)."""
        rates: list[float | None] = [None] * len(waves)
        confidences: list[float | None] = [None] * len(waves)
        if len(waves):
            encoded = encoded or self.encode(waves)
            if encoded.logits is not None and encoded.frames is not None:  # else Silero is the only witness
                log_probs = encoded.logits.float().log_softmax(-1)
                for i, wave in enumerate(waves):
                    rates[i], confidences[i] = ctc_evidence(log_probs[i, : int(encoded.frames[i])],
                                                            len(wave) / SAMPLE_RATE)
        return [Presence(no_speech_probability(seg.speech_prob, rate), conf, seg.speech_prob, rate)
                for seg, rate, conf in zip(segments, rates, confidences)]

    def ctc_texts(self, waves: Sequence[np.ndarray], encoded: Encoded | None = None) -> list[str] | None:
        """m_A's own greedy CTC transcripts of 16 kHz mono waveforms (from `encoded` when given, else one m_A
        forward for the batch); None for an m_A without a CTC head."""
        tower = getattr(self.speech.tower, "tower", self.speech.tower)
        encoded = encoded or self.encode(waves)
        if getattr(tower, "vocab", None) is None or encoded.logits is None or encoded.frames is None:
            return None
        return ctc_transcripts(encoded.logits, encoded.frames, tower.vocab, language_script(self.language))

    @torch.no_grad()
    def decode(self, waves: Sequence[np.ndarray], tasks: Sequence[str], decoding: DecodeConfig | None = None,
               fallback: bool = True, alignments: bool = False, words: bool = False,
               encoded: Encoded | None = None) -> list[dict[str, Decoded]]:
        """Decode each 16 kHz mono waveform (N_i,) whole, as one batch: m_A once (or `encoded`, from `encode`),
        then one search per task (one for both when chained: the transcript is the translation's part before the
        English marker).

        fallback: decode outputs that loop again with n-gram blocking (kept when they loop less).
        alignments: also compute each output's cross-attention over the audio (one extra forward per item).
        words: also time each transcript's words by m_A's CTC alignment.
        Returns one {task: Decoded} per waveform.
        """
        d = decoding or self.decoding
        # once for every task: m_A's states, and its CTC logits for drafts, CTC scores and word times
        audio, lens, states, logits, frames = encoded or self.encode(waves)
        caps = token_caps((lens.double() / SAMPLE_RATE).tolist(), d)
        results: list[dict[str, Decoded]] = [{} for _ in waves]
        with self._autocast():
            guide = self._guide(logits, frames, d)
            shared = self.speech.shared_search(tasks)
            for task in tasks:
                if shared and task == "transcribe":
                    continue  # read off the translation's search below
                task_caps = [min(c, d.max_new_tokens) for c in self.speech.task_caps(task, caps)]
                seqs = self._search(task, states, task_caps, d, guide)
                said = [self.speech.decode(s) for s in seqs]  # all of it: a chained output loops in its transcript
                redone, n = set(), 0
                loops = [i for i, t in enumerate(said) if looped(t)] if fallback else []
                if loops:
                    # 3-grams of tokens: with a transcript one character per token that also stops a loop of a
                    # syllable (9-grams let it run on with variations); the result is kept only if it loops less
                    n = min(d.no_repeat_ngram_size or FALLBACK_NO_REPEAT_NGRAM, FALLBACK_NO_REPEAT_NGRAM)
                    strict = replace(d, no_repeat_ngram_size=n)
                    again = self._search(task, states.select(loops), [task_caps[i] for i in loops], strict, guide,
                                         loops)
                    for i, seq in zip(loops, again):
                        text = self.speech.decode(seq)
                        if loop_size(text) < loop_size(said[i]):
                            seqs[i], said[i] = seq, text
                            redone.add(i)
                texts = [self.speech.answer(task, t) for t in said]
                for i, (seq, text) in enumerate(zip(seqs, texts)):
                    results[i][task] = Decoded(text, seq, task_caps[i], fallback=n if i in redone else 0)
                if alignments:
                    from speech_calm.speech.alignment import token_attention

                    for i, seq in enumerate(seqs):
                        results[i][task].alignment = token_attention(self.speech, states.select([i]), task, seq)
            if shared:
                caps = [min(c, d.max_new_tokens) for c in self.speech.task_caps("transcribe", caps)]
                results = [self._transcript_of(r, tasks, cap, states.select([i]) if alignments else None)
                           for i, (r, cap) in enumerate(zip(results, caps))]
            if words and "transcribe" in tasks:
                self._words(audio, lens, results, (logits, frames) if logits is not None else None)
        return results

    def _transcript_of(self, result: dict[str, Decoded], tasks: Sequence[str], cap: int,
                       states: TowerOutput | None) -> dict[str, Decoded]:
        """`result` (a chained translation) with the transcript it starts with (cut at the transcript's token
        `cap`) as the transcribe output, in the order of `tasks`; with the transcript's own alignment when
        `states` (one item's m_A states) are given."""
        said = result["translate"]
        tokens = self.speech.transcript_tokens(said.tokens)[:cap]
        transcript = Decoded(self.speech.decode(tokens), tokens, cap, fallback=said.fallback)
        if states is not None:
            from speech_calm.speech.alignment import token_attention

            transcript.alignment = token_attention(self.speech, states, "transcribe", tokens)
        return {task: transcript if task == "transcribe" else result[task] for task in tasks}

    # ------------------------------------------------------------------------------------------ files

    def load_audio(self, path: str, name: str | None = None) -> np.ndarray:
        """`path` as 16 kHz mono (N,) float32; `AudioError` naming `name` (default: the path) when it cannot be
        read or is too short for m_A."""
        wave = load_audio(path, name=name)
        if len(wave) < self.min_samples:
            raise AudioError(f"{name or path}: audio is too short ({1000 * len(wave) / SAMPLE_RATE:.0f} ms; this "
                             f"model needs at least {1000 * self.min_samples / SAMPLE_RATE:.0f} ms)")
        return wave

    def _read(self, path: str, seg: SegmentOptions, errors: str, gate: SpeechGate) -> FileResult:
        item = FileResult(path, (), self.language, gate=gate)
        try:
            if Path(path).is_dir():
                raise AudioError(f"{path}: a directory with no audio files in it (looked for "
                                 f"{', '.join(AUDIO_EXTENSIONS)})")
            wave = self.load_audio(path)
            item.duration = len(wave) / SAMPLE_RATE
            segments = find_segments(wave, SAMPLE_RATE, seg, name=path)
            # a segment shorter than m_A can read keeps its neighbouring context instead
            item.segments = [_widen(s, self.min_samples, len(wave)) for s in segments]
            item.wave = wave
        except AudioError as e:
            if errors == "raise":
                raise
            item.error = str(e)
        return item

    def transcribe_iter(
        self,
        audio: Iterable[str | os.PathLike],
        task: str = "both",
        *,
        batch_size: int = 8,
        segmentation: SegmentOptions | None = None,
        gate: SpeechGate | None = None,
        errors: str = "raise",
        progress: bool = False,
        alignments: bool = False,
        words: bool = False,
        **decoding: Any,
    ) -> Iterator[FileResult]:
        """Like `transcribe`, but yields a `FileResult` per file, in input order, as soon as it is done."""
        tasks = tasks_of(task)
        if errors not in ("raise", "report"):
            raise ValueError(f"errors must be 'raise' or 'report', got {errors!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        seg = segmentation or SegmentOptions()
        gate = gate or SpeechGate()
        d = self.decoding_for(seg.max_segment, **decoding)
        if words:
            if "transcribe" not in tasks:
                raise ValueError("word timestamps time the transcript's words: use task 'transcribe' or 'both'")
            self.ctc_model()  # no CTC head: fail before any audio is read
        from tqdm import tqdm

        bar = tqdm(total=0, unit="s", desc="audio decoded", disable=not progress, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
        pool: list[FileResult] = []
        try:
            for path in audio:
                item = self._read(str(path), seg, errors, gate)
                item.tasks = tasks
                pool.append(item)
                bar.total += item.duration if item.ok else 0.0
                bar.refresh()
                if sum(len(f.segments) for f in pool) >= batch_size * POOL_BATCHES:
                    yield from self._run_pool(pool, tasks, d, batch_size, alignments, words, bar)
                    pool = []
            yield from self._run_pool(pool, tasks, d, batch_size, alignments, words, bar)
        finally:
            bar.close()

    def _run_pool(self, pool: list[FileResult], tasks: tuple[str, ...], d: DecodeConfig, batch_size: int,
                  alignments: bool, words: bool, bar: Any) -> Iterator[FileResult]:
        """Decode every segment of the pooled files, longest first (similar lengths share a batch, and memory
        trouble shows on the first batch), then hand the files back in input order."""
        jobs = [(f, k) for f in pool if f.ok for k in range(len(f.segments))]
        jobs.sort(key=lambda job: -job[0].segments[job[1]].duration)  # stable: ties keep input order
        # progress counts the file's whole duration: each segment also stands for its share of the silence
        share = {id(f): f.duration / max(sum(s.duration for s in f.segments), 1e-9) for f in pool}
        for f in pool:
            f.outputs = [{} for _ in f.segments]
            f.presence = [Presence(None, None) for _ in f.segments]
        for batch in chunks(jobs, batch_size):
            waves = [f.wave[f.segments[k].start : f.segments[k].end] for f, k in batch]  # type: ignore[index]
            encoded = self.encode(waves)  # m_A once for the search and the speech gate
            outs = self.decode(waves, tasks, d, alignments=alignments, words=words, encoded=encoded)
            judged = self.presence(waves, [f.segments[k] for f, k in batch], encoded)
            for (f, k), out, presence in zip(batch, outs, judged):
                f.presence[k] = presence
                f.outputs[k] = _silenced(out) if presence.silenced(f.gate) else out
            bar.update(sum(f.segments[k].duration * share[id(f)] for f, k in batch))
        for f in pool:
            f.wave = None  # the audio is not needed any more
            yield f

    def transcribe(
        self,
        audio: str | os.PathLike | Sequence[str | os.PathLike],
        task: str = "both",
        *,
        batch_size: int = 8,
        segmentation: SegmentOptions | None = None,
        gate: SpeechGate | None = None,
        errors: str = "raise",
        progress: bool = False,
        words: bool = False,
        **decoding: Any,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Transcribe and/or translate one file (→ a dict) or several (→ a list of dicts, in order).

        Each dict: `{"path", "duration", "language", "task", "text", "translation", "segments": [{"start",
        "end", "text", "translation", "no_speech_prob", "confidence", "low_confidence"}], "warnings"}` (seconds;
        None for a task not run).
        task: "transcribe", "translate" or "both". batch_size: segments decoded together.
        segmentation: how long audio is cut (`SegmentOptions`; Silero VAD by default). gate: when a segment
        without speech gives no text and when one is flagged (`SpeechGate`). errors: "raise" stops at the first unusable
        file (`AudioError`); "report" gives that file `{"path", "error", ...}` and goes on. words: each segment
        also gets `"words": [{"word", "start", "end"}]`, the transcript's words timed by m_A's CTC alignment.
        decoding: DecodeConfig fields, e.g. beam_size=4, no_repeat_ngram_size=3, repetition_penalty=1.2,
        max_tokens_per_second=8.0 (defaults: the run's recipe).
        """
        single = isinstance(audio, (str, os.PathLike))
        paths = [audio] if single else list(audio)  # type: ignore[list-item]
        results = [r.to_dict() for r in self.transcribe_iter(
            paths, task, batch_size=batch_size, segmentation=segmentation, gate=gate, errors=errors,
            progress=progress,
            words=words, **decoding)]
        return results[0] if single else results


class Encoded(NamedTuple):
    """One batch through m_A (`Transcriber.encode`): padded audio (B, T) and lengths (B,), the states the bridges
    read, and m_A's CTC logits (B, S, V) with real frames (B,) (None without a CTC head)."""

    audio: torch.Tensor
    lens: torch.Tensor
    states: TowerOutput
    logits: torch.Tensor | None
    frames: torch.Tensor | None


class _Guide:
    """One batch's m_A CTC output, made into each task's drafts and prefix scorer on demand."""

    def __init__(self, speech: SpeechModel, logits: torch.Tensor, frames: torch.Tensor, vocab: Any) -> None:
        self.speech, self.logits, self.frames, self.vocab = speech, logits, frames, vocab
        self._texts: list[str] | None = None

    def texts(self) -> list[str]:
        """m_A's greedy CTC transcripts, in the run's script."""
        if self._texts is None:
            self._texts = ctc_transcripts(self.logits, self.frames, self.vocab, language_script(self.speech.language))
        return self._texts

    def drafts(self, task: str, rows: list[int]) -> list[list[int]] | None:
        if not guides_task(self.speech, task):
            return None
        texts = self.texts()
        return [draft_ids(self.speech, texts[i], task) for i in rows]

    def scorer(self, task: str, rows: list[int]) -> Any:
        index = torch.tensor(rows, device=self.logits.device)
        return ctc_scorer(self.speech, self.logits[index], self.frames[index], task, self.vocab)


def _silenced(out: dict[str, Decoded]) -> dict[str, Decoded]:
    """A segment's outputs emptied: it holds no speech, so whatever was decoded from it is not text."""
    return {task: replace(dec, text="", tokens=[], fallback=0, words=None if dec.words is None else [],
                          alignment=None if dec.alignment is None else dec.alignment[:0])
            for task, dec in out.items()}


def _widen(seg: Segment, min_samples: int, total: int) -> Segment:
    """`seg` grown symmetrically to at least `min_samples` (within the recording)."""
    missing = min_samples - (seg.end - seg.start)
    if missing <= 0:
        return seg
    start = max(0, seg.start - (missing + 1) // 2)
    end = min(total, start + min_samples)
    return Segment(max(0, end - min_samples), end, seg.sample_rate, seg.speech_prob)
