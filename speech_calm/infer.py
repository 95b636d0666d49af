"""python -m speech_calm.infer RUN_DIR FILE_OR_DIR... and `speech_calm.load`: transcripts and translations of
audio files of any common format and any length.

    model = speech_calm.load("runs/telugu")
    result = model.transcribe("call.mp3", task="both")
    result["text"], result["translation"], result["segments"][0]   # {"start", "end", "text", "translation"}

What one call does (whisper's transcribe.py is the model):

1. read each file (whatever libsndfile decodes, or ffmpeg when on PATH: WAV, FLAC, MP3, OGG/Opus, M4A, ...;
   any sample rate and channel count) as 16 kHz mono (`speech_calm.audio`);
2. cut it at pauses into segments of at most `max_segment` seconds (`speech_calm.segment`): long audio is
   never truncated, only silence is left out;
3. pool the segments of several files, sort them by length and decode them in batches: m_A once per batch,
   then one search per task; tokens are capped per second of audio (`max_tokens_per_second`), and a segment
   whose output loops ("the the the ...") is decoded again with n-gram blocking;
4. put the texts back in file order with their timestamps; results come out file by file, in input order.

A file that cannot be used (missing, unreadable, empty, silent, too short) becomes a per-file error with a
message that says what is wrong; the other files go on. The CLI's exit code is 1 when any file failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speech_calm.audio import SAMPLE_RATE, AudioError, load_audio
from speech_calm.config import ConfigError, DecodeConfig, Recipe, load_recipe
from speech_calm.data import chunks, pad_waves
from speech_calm.decoding import generate
from speech_calm.formats import FORMATS, render, write_text
from speech_calm.segment import Segment, SegmentOptions, find_segments
from speech_calm.speech import TOWER, TASKS, SpeechModel, load_speech_model, token_caps
from speech_calm.towers import TowerOutput, resolve_dtype

__all__ = ["AUDIO_EXTENSIONS", "Decoded", "FileResult", "Transcriber", "load", "main"]

TASK_CHOICES = ("transcribe", "translate", "both")
# what a directory argument is searched for (explicit file arguments are tried whatever their name)
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".webm", ".wma",
                    ".aif", ".aiff", ".caf", ".au", ".w64", ".rf64")
POOL_BATCHES = 4  # segments are pooled across files until this many batches are ready, then sorted and decoded
FALLBACK_NO_REPEAT_NGRAM = 3  # n-gram blocking for a segment whose first decoding looped
MIN_AUDIO_SECONDS = 0.1  # shorter files carry no word


# --------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------


@dataclass
class Decoded:
    """One segment's output for one task."""

    text: str
    tokens: list[int]
    cap: int  # the token cap this segment had (from its duration)
    fallback: int = 0  # the first search looped: n of the n-gram blocking of the second search (0 = none)
    alignment: np.ndarray | None = None  # (tokens, frames) cross-attention, when asked for

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

    @property
    def ok(self) -> bool:
        return self.error is None

    def warnings(self) -> list[str]:
        """What a reader of the output should know: segments cut by the token cap, loops decoded again."""
        notes = []
        for seg, out in zip(self.segments, self.outputs):
            where = f"{seg.start_seconds:.1f}-{seg.end_seconds:.1f} s"
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
        for seg, out in zip(self.segments, self.outputs):
            item = {"start": round(seg.start_seconds, 3), "end": round(seg.end_seconds, 3)}
            for task, key in keys.items():
                item[key] = out[task].text if task in out else None
            segments.append(item)
        for task, key in keys.items():
            result[key] = " ".join(s[key] for s in segments if s[key]) if task in self.tasks else None
        return {**result, "segments": segments, "warnings": self.warnings()}


def tasks_of(task: str) -> tuple[str, ...]:
    """"both" → ("transcribe", "translate"); one task → itself."""
    if task not in TASK_CHOICES:
        raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASK_CHOICES)}")
    return TASKS if task == "both" else (task,)


def _longest_run(items: Sequence, max_unit: int, min_repeats: int) -> int:
    """Items (words of a list, characters of a string) covered by the longest run of a unit of 1..`max_unit`
    items repeated back to back at least `min_repeats` times; 0 when there is none."""
    best = 0
    for n in range(1, max_unit + 1):
        i = 0
        while i + 2 * n <= len(items):
            reps = 1
            while items[i + reps * n : i + (reps + 1) * n] == items[i : i + n]:
                reps += 1
            if reps >= min_repeats:
                best = max(best, reps * n)
                i += reps * n
            else:
                i += 1
    return best


def repeated_run(text: str, max_unit: int = 4) -> int:
    """Words covered by the longest run of a unit of 1..`max_unit` words repeated back to back, counting
    only runs of >= 3 repeats ("a b a b a b" → 6); 0 when nothing loops."""
    return _longest_run(text.split(), max_unit, 3)


def repeated_chars(text: str, max_unit: int = 4) -> int:
    """Characters covered by the longest run of a unit of 1..`max_unit` characters repeated back to back,
    counting only runs of >= 4 repeats ("కావాలిలిలిలిలి" → 10); 0 when nothing loops. A transcript written
    one character per token can loop inside a word, which `repeated_run` does not see."""
    return _longest_run(text, max_unit, 4)


def looped(text: str) -> bool:
    """Output that runs in a loop: some unit of words repeated back to back over at least 6 words, or a unit
    of a few characters over at least 12 characters."""
    return repeated_run(text) >= 6 or repeated_chars(text) >= 12


def loop_size(text: str) -> tuple[int, int]:
    """How much `text` loops, to compare two decodings: words in word loops first, then characters."""
    return repeated_run(text), repeated_chars(text)


# --------------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------------


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

    def __init__(self, speech: SpeechModel, recipe: Recipe, run_dir: Path, dtype: torch.dtype) -> None:
        self.speech = speech
        self.recipe = recipe
        self.run_dir = run_dir
        self.dtype = dtype
        self.language = recipe.compose.language
        self.decoding = recipe.compose.decoding
        self.min_samples = max(int(getattr(speech.tower, "min_samples", 0)), int(MIN_AUDIO_SECONDS * SAMPLE_RATE))

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
        if overrides.get("max_new_tokens") is None:
            longest = max(self.speech.task_caps(t, token_caps([longest_seconds], d))[0] for t in TASKS)
            d = replace(d, max_new_tokens=max(d.max_new_tokens, longest))
        return d

    # ------------------------------------------------------------------------------------------ batches

    def _search(self, task: str, states: TowerOutput, caps: list[int], d: DecodeConfig) -> list[list[int]]:
        n = states.mask.shape[0]
        ids = torch.tensor([self.speech.prompt_ids(task)] * n, device=self.device)
        return generate(self.speech.model, ids, None, None, self.speech.options(d, task), max_new_tokens=caps,
                        tower_outputs={TOWER: states})

    @torch.no_grad()
    def decode(self, waves: Sequence[np.ndarray], tasks: Sequence[str], decoding: DecodeConfig | None = None,
               fallback: bool = True, alignments: bool = False) -> list[dict[str, Decoded]]:
        """Decode each 16 kHz mono waveform (N_i,) whole, as one batch: m_A once, then one search per task (one
        for both when chained: the transcript is the translation's part before the English marker).

        fallback: decode outputs that loop again with n-gram blocking (kept when they loop less).
        alignments: also compute each output's cross-attention over the audio (one extra forward per item).
        Returns one {task: Decoded} per waveform.
        """
        d = decoding or self.decoding
        audio, lens = pad_waves(waves)  # (B, T), (B,)
        caps = token_caps((lens.double() / SAMPLE_RATE).tolist(), d)
        results: list[dict[str, Decoded]] = [{} for _ in waves]
        with self._autocast():
            states = self.speech.tower(audio.to(self.device), lens.to(self.device))  # once for every task
            shared = self.speech.shared_search(tasks)
            for task in tasks:
                if shared and task == "transcribe":
                    continue  # read off the translation's search below
                task_caps = [min(c, d.max_new_tokens) for c in self.speech.task_caps(task, caps)]
                seqs = self._search(task, states, task_caps, d)
                said = [self.speech.decode(s) for s in seqs]  # all of it: a chained output loops in its transcript
                redone, n = set(), 0
                loops = [i for i, t in enumerate(said) if looped(t)] if fallback else []
                if loops:
                    # 3-grams of tokens: with a transcript one character per token that also stops a loop of a
                    # syllable (9-grams let it run on with variations); the result is kept only if it loops less
                    n = min(d.no_repeat_ngram_size or FALLBACK_NO_REPEAT_NGRAM, FALLBACK_NO_REPEAT_NGRAM)
                    strict = replace(d, no_repeat_ngram_size=n)
                    again = self._search(task, states.select(loops), [task_caps[i] for i in loops], strict)
                    for i, seq in zip(loops, again):
                        text = self.speech.decode(seq)
                        if loop_size(text) < loop_size(said[i]):
                            seqs[i], said[i] = seq, text
                            redone.add(i)
                texts = [self.speech.answer(task, t) for t in said]
                for i, (seq, text) in enumerate(zip(seqs, texts)):
                    results[i][task] = Decoded(text, seq, task_caps[i], fallback=n if i in redone else 0)
                if alignments:
                    from speech_calm.alignment import token_attention

                    for i, seq in enumerate(seqs):
                        results[i][task].alignment = token_attention(self.speech, states.select([i]), task, seq)
            if shared:
                caps = [min(c, d.max_new_tokens) for c in self.speech.task_caps("transcribe", caps)]
                results = [self._transcript_of(r, tasks, cap, states.select([i]) if alignments else None)
                           for i, (r, cap) in enumerate(zip(results, caps))]
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
            from speech_calm.alignment import token_attention

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

    def _read(self, path: str, seg: SegmentOptions, errors: str) -> FileResult:
        item = FileResult(path, (), self.language)
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
        errors: str = "raise",
        progress: bool = False,
        alignments: bool = False,
        **decoding: Any,
    ) -> Iterator[FileResult]:
        """Like `transcribe`, but yields a `FileResult` per file, in input order, as soon as it is done."""
        tasks = tasks_of(task)
        if errors not in ("raise", "report"):
            raise ValueError(f"errors must be 'raise' or 'report', got {errors!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        seg = segmentation or SegmentOptions()
        d = self.decoding_for(seg.max_segment, **decoding)
        from tqdm import tqdm

        bar = tqdm(total=0, unit="s", desc="audio decoded", disable=not progress, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
        pool: list[FileResult] = []
        try:
            for path in audio:
                item = self._read(str(path), seg, errors)
                item.tasks = tasks
                pool.append(item)
                bar.total += item.duration if item.ok else 0.0
                bar.refresh()
                if sum(len(f.segments) for f in pool) >= batch_size * POOL_BATCHES:
                    yield from self._run_pool(pool, tasks, d, batch_size, alignments, bar)
                    pool = []
            yield from self._run_pool(pool, tasks, d, batch_size, alignments, bar)
        finally:
            bar.close()

    def _run_pool(self, pool: list[FileResult], tasks: tuple[str, ...], d: DecodeConfig, batch_size: int,
                  alignments: bool, bar: Any) -> Iterator[FileResult]:
        """Decode every segment of the pooled files, longest first (similar lengths share a batch, and memory
        trouble shows on the first batch), then hand the files back in input order."""
        jobs = [(f, k) for f in pool if f.ok for k in range(len(f.segments))]
        jobs.sort(key=lambda job: -job[0].segments[job[1]].duration)  # stable: ties keep input order
        # progress counts the file's whole duration: each segment also stands for its share of the silence
        share = {id(f): f.duration / max(sum(s.duration for s in f.segments), 1e-9) for f in pool}
        for f in pool:
            f.outputs = [{} for _ in f.segments]
        for batch in chunks(jobs, batch_size):
            waves = [f.wave[f.segments[k].start : f.segments[k].end] for f, k in batch]  # type: ignore[index]
            for (f, k), out in zip(batch, self.decode(waves, tasks, d, alignments=alignments)):
                f.outputs[k] = out
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
        errors: str = "raise",
        progress: bool = False,
        **decoding: Any,
    ) -> dict[str, Any] | list[dict[str, Any]]:
        """Transcribe and/or translate one file (→ a dict) or several (→ a list of dicts, in order).

        Each dict: `{"path", "duration", "language", "task", "text", "translation", "segments": [{"start",
        "end", "text", "translation"}], "warnings"}` (seconds; None for a task not run).
        task: "transcribe", "translate" or "both". batch_size: segments decoded together.
        segmentation: how long audio is cut (`SegmentOptions`). errors: "raise" stops at the first unusable
        file (`AudioError`); "report" gives that file `{"path", "error", ...}` and goes on.
        decoding: DecodeConfig fields, e.g. beam_size=4, no_repeat_ngram_size=3, repetition_penalty=1.2,
        max_tokens_per_second=8.0 (defaults: the run's recipe).
        """
        single = isinstance(audio, (str, os.PathLike))
        paths = [audio] if single else list(audio)  # type: ignore[list-item]
        results = [r.to_dict() for r in self.transcribe_iter(
            paths, task, batch_size=batch_size, segmentation=segmentation, errors=errors, progress=progress,
            **decoding)]
        return results[0] if single else results


def _widen(seg: Segment, min_samples: int, total: int) -> Segment:
    """`seg` grown symmetrically to at least `min_samples` (within the recording)."""
    missing = min_samples - (seg.end - seg.start)
    if missing <= 0:
        return seg
    start = max(0, seg.start - (missing + 1) // 2)
    end = min(total, start + min_samples)
    return Segment(max(0, end - min_samples), end, seg.sample_rate)


def load(run_dir: str | os.PathLike, device: str = "auto", dtype: str = "auto") -> Transcriber:
    """A trained run directory (from `python -m speech_calm.train`) ready for `transcribe`.

    device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N". dtype: "auto" (bf16 on CUDA, fp32 on CPU),
    "float32", "bfloat16" or "float16", for the anchor and m_A (bridges stay fp32 under autocast).
    """
    from speech_calm.stages.speech_compose import tower_source

    run_dir = Path(run_dir)
    recipe_file = run_dir / "recipe.yaml"
    if not recipe_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory ({recipe_file} is missing); train one with "
                                f"python -m speech_calm.train recipes/telugu.yaml")
    recipe = load_recipe(recipe_file)
    bridges = run_dir / "compose" / "bridges.safetensors"
    if not bridges.is_file():
        raise FileNotFoundError(f"{run_dir} has no trained bridges ({bridges} is missing): the compose stage has "
                                f"not finished; run python -m speech_calm.train {recipe_file} to finish it")
    tower = tower_source(recipe, run_dir)
    if not recipe.compose.tower.source and not (Path(tower) / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} has no speech encoder ({tower} is missing): the encoder stage has not "
                                f"finished; run python -m speech_calm.train {recipe_file}")
    dev = resolve_device(device)
    cfg = recipe.compose
    if dtype != "auto":
        resolve_dtype(dtype, dev)  # a clear error for an unknown name, before anything loads
        cfg = replace(cfg, anchor=replace(cfg.anchor, dtype=dtype), tower=replace(cfg.tower, dtype=dtype))
    speech = load_speech_model(cfg, tower, dev, bridges)
    speech.model.eval()
    return Transcriber(speech, recipe, run_dir, resolve_dtype(cfg.anchor.dtype, dev))


# --------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------


def expand_inputs(inputs: Sequence[str]) -> list[tuple[str, str]]:
    """(path, output name) per file: directories are searched recursively for AUDIO_EXTENSIONS; a directory
    without audio gives itself (so it is reported as an error). Output names are relative to the directory
    argument (or the bare file name), without the extension, made unique with `-2`, `-3`, ..."""
    found: list[tuple[str, str]] = []
    for arg in inputs:
        p = Path(arg)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
            found.extend((str(f), str(f.relative_to(p).with_suffix(""))) for f in files)
            if not files:
                found.append((arg, p.name or "input"))
        else:
            found.append((arg, p.stem or "input"))
    seen: dict[str, int] = {}
    out = []
    for path, name in found:
        seen[name] = seen.get(name, 0) + 1
        out.append((path, name if seen[name] == 1 else f"{name}-{seen[name]}"))
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m speech_calm.infer",
        description="Transcribe and translate audio files with a trained run (any format, any length).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  python -m speech_calm.infer runs/telugu call.mp3\n"
            "  python -m speech_calm.infer runs/telugu recordings/ --task both --format srt json --out subs/\n"
            "  python -m speech_calm.infer runs/telugu long.flac --format srt --plot --out out/\n"
            "exit code: 0 when every file was transcribed, 1 when any failed, 2 for a usage or model error"
        ),
    )
    p.add_argument("run_dir", help="a run directory made by python -m speech_calm.train")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR", help="audio files, or directories to search")
    p.add_argument("--task", choices=TASK_CHOICES, default="both", help="default: both")
    p.add_argument("--format", nargs="+", choices=FORMATS, default=["txt"],
                   help="printed (and written with --out) formats; several allowed (default: txt)")
    p.add_argument("--out", type=Path, default=None, help="also write OUT/NAME.FORMAT per file (atomically)")
    p.add_argument("--batch-size", type=int, default=8, help="segments decoded together (default 8)")
    p.add_argument("--beam", type=int, default=None, help="beam size (default: the recipe's, 1 = greedy)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                   help="auto: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--no-repeat-ngram", type=int, default=None, metavar="N",
                   help="forbid repeating any generated N-gram of tokens (default: the recipe's; 0 = off)")
    p.add_argument("--repetition-penalty", type=float, default=None, metavar="F",
                   help=">1 discourages tokens already generated (default: the recipe's)")
    p.add_argument("--max-tokens-per-second", type=float, default=None, metavar="F",
                   help="cap on output tokens per second of audio (default: the recipe's)")
    p.add_argument("--max-segment", type=float, default=SegmentOptions.max_segment, metavar="S",
                   help=f"longest segment in seconds (default {SegmentOptions.max_segment:g})")
    p.add_argument("--min-silence", type=float, default=SegmentOptions.min_silence, metavar="S",
                   help=f"shortest pause that splits segments (default {SegmentOptions.min_silence:g})")
    p.add_argument("--plot", action="store_true",
                   help="write NAME.TASK.align.png (into --out, else here): which audio frames each output "
                        "token attended to")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for torch (default: torch's choice; 1 is fastest on a busy machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        seg = SegmentOptions(max_segment=args.max_segment, min_silence=args.min_silence)
        tasks_of(args.task)
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.threads is not None:
            torch.set_num_threads(max(1, args.threads))
        t0 = time.time()
        model = load(args.run_dir, args.device, args.dtype)
        if args.plot:
            from speech_calm.alignment import check_alignable

            check_alignable(model.speech)
        overrides = {"beam_size": args.beam, "no_repeat_ngram_size": args.no_repeat_ngram,
                     "repetition_penalty": args.repetition_penalty,
                     "max_tokens_per_second": args.max_tokens_per_second}
        model.decoding_for(seg.max_segment, **overrides)  # bad settings fail here, before any audio is read
    except (ConfigError, FileNotFoundError, OSError, TypeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"loaded {args.run_dir} on {model.device} in {time.time() - t0:.1f} s", file=sys.stderr)
    files = expand_inputs(args.inputs)
    headers = len(files) * len([f for f in args.format if f != "json"]) > 1
    failed: list[FileResult] = []
    done, seconds, t1 = 0, 0.0, time.time()
    results = model.transcribe_iter(
        [path for path, _ in files], args.task, batch_size=args.batch_size, segmentation=seg, errors="report",
        progress=not args.quiet, alignments=args.plot, **overrides,
    )
    for index, result in enumerate(results):  # in input order; the generator runs to its end (progress bar)
        name = files[index][1]
        if not result.ok:
            failed.append(result)
            print(f"error: {result.error}", file=sys.stderr)
            continue
        done, seconds = done + 1, seconds + result.duration
        data = result.to_dict()
        for note in data["warnings"]:
            print(f"warning: {result.path}: {note}", file=sys.stderr)
        for fmt in args.format:
            text = render(data, fmt)
            if fmt == "json":  # one line per file on stdout (JSON Lines); pretty in files
                print(json.dumps(data, ensure_ascii=False))
            else:
                if headers:
                    print(f"==> {result.path} [{fmt}] <==")
                print(text, end="" if text.endswith("\n") else "\n")
            if args.out is not None:
                write_text(args.out / f"{name}.{fmt}", text)
        if args.plot:
            _plot(model, result, args.out or Path("."), name)
    wall = time.time() - t1
    summary = (f"{done} of {len(files)} file(s) done ({seconds / 60:.1f} min of audio in {wall:.1f} s, "
               f"{seconds / max(wall, 1e-9):.1f}x real time)")
    if failed:
        summary += f"; {len(failed)} failed: " + ", ".join(f.path for f in failed)
    print(summary, file=sys.stderr)
    return 1 if failed else 0


def _plot(model: Transcriber, result: FileResult, out: Path, name: str) -> None:
    """NAME.TASK.align.png per task: every segment's token-by-frame attention on the file's time axis."""
    from speech_calm.alignment import AlignedSegment, plot_alignment

    for task in result.tasks:
        pieces = []
        for seg, outputs in zip(result.segments, result.outputs):
            dec = outputs[task]
            labels = [model.speech.tokenizer.decode([t]).strip() or "␣" for t in dec.tokens]  # ␣: a space token
            pieces.append(AlignedSegment(seg.start_seconds, seg.end_seconds, dec.alignment, labels))
        path = plot_alignment(out / f"{name}.{task}.align.png", pieces,
                              f"{Path(result.path).name}: {task}, cross-attention of each output token")
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
