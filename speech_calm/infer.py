"""python -m speech_calm.infer RUN_DIR FILE_OR_DIR... [--task transcribe|translate|both] [--format ...]: transcripts
and translations of audio files of any common format and any length, and `load`, behind `speech_calm.load`.

How a file is read, cut at pauses, batched and decoded: `speech_calm.speech.transcribe`. A file that cannot be
used becomes a per-file error; the others go on, and the exit code is 1 when any file failed (2: usage).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from speech_calm.schema import ConfigError
from speech_calm.speech.audio import AUDIO_EXTENSIONS
from speech_calm.speech.formats import FORMATS, render, write_text
from speech_calm.speech.model import load_speech_model
from speech_calm.speech.segment import DETECTORS, SegmentOptions
from speech_calm.speech.speech_presence import SpeechGate
from speech_calm.speech.transcribe import (
    TASK_CHOICES,
    FileResult,
    Transcriber,
    resolve_device,
    tasks_of,
)
from speech_calm.towers.load import resolve_dtype
from speech_calm.training.recipe import load_recipe, tower_source


def load(run_dir: str | os.PathLike, device: str = "auto", dtype: str = "auto") -> Transcriber:
    """A trained run directory (from `python -m speech_calm.train`) ready for `transcribe`.

    device: "auto" (CUDA when available), "cpu", "cuda" or "cuda:N". dtype: "auto" (bf16 on CUDA, fp32 on CPU),
    "float32", "bfloat16" or "float16", for the anchor and m_A (bridges stay fp32 under autocast).
    """
    run_dir = Path(run_dir)
    recipe_file = run_dir / "recipe.yaml"
    if not recipe_file.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory ({recipe_file} is missing); train one with "
                                f"python -m speech_calm.train recipes/telugu.yaml")
    recipe = load_recipe(recipe_file, trained=True)
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
    p.add_argument("--no-draft", action="store_true",
                   help="decode token by token instead of verifying m_A's CTC transcript as a draft (same output, "
                        "more anchor forwards; for checking)")
    p.add_argument("--ctc-weight", type=float, default=None, metavar="W",
                   help="mix m_A's CTC prefix scores into the transcript's search with weight W in [0, 1) "
                        "(joint CTC/attention decoding; default: the recipe's decoding.ctc_weight)")
    p.add_argument("--max-segment", type=float, default=SegmentOptions.max_segment, metavar="S",
                   help=f"longest segment in seconds (default {SegmentOptions.max_segment:g})")
    p.add_argument("--min-silence", type=float, default=SegmentOptions.min_silence, metavar="S",
                   help=f"shortest pause that splits segments (default {SegmentOptions.min_silence:g})")
    p.add_argument("--vad", choices=DETECTORS, default=SegmentOptions.detector,
                   help="speech detector that cuts the audio: silero (default; energy where silero-vad cannot "
                        "be imported) or energy (any loud sound counts)")
    p.add_argument("--no-speech-threshold", type=float, default=SpeechGate.no_speech_threshold, metavar="P",
                   help="a segment whose no-speech probability is above P gives no text and a warning "
                        f"(default {SpeechGate.no_speech_threshold:g}; 1 = never)")
    p.add_argument("--low-confidence", type=float, default=SpeechGate.low_confidence, metavar="L",
                   help="flag segments whose m_A mean log-probability is below L (JSON low_confidence, "
                        f"'[?] ' in srt/vtt; default {SpeechGate.low_confidence:g})")
    p.add_argument("--word-timestamps", action="store_true",
                   help="time every transcript word by m_A's CTC alignment (JSON: segments[i].words)")
    p.add_argument("--word-level", action="store_true",
                   help="srt/vtt subtitles with one cue per transcript word (implies --word-timestamps)")
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
        seg = SegmentOptions(max_segment=args.max_segment, min_silence=args.min_silence, detector=args.vad)
        gate = SpeechGate(args.no_speech_threshold, args.low_confidence)
        tasks_of(args.task)
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        if args.threads is not None:
            torch.set_num_threads(max(1, args.threads))
        t0 = time.time()
        model = load(args.run_dir, args.device, args.dtype)
        if args.plot:
            from speech_calm.speech.alignment import check_alignable

            check_alignable(model.speech)
        overrides = {"beam_size": args.beam, "no_repeat_ngram_size": args.no_repeat_ngram,
                     "repetition_penalty": args.repetition_penalty,
                     "max_tokens_per_second": args.max_tokens_per_second, "ctc_weight": args.ctc_weight,
                     "draft": False if args.no_draft else None}
        model.decoding_for(seg.max_segment, **overrides)  # bad settings fail here, before any audio is read
        if args.word_timestamps or args.word_level:
            if args.task == "translate":
                raise ValueError("--word-timestamps and --word-level time the transcript's words: use --task "
                                 "transcribe or both")
            model.ctc_model()  # and a run whose m_A has no CTC head
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
        [path for path, _ in files], args.task, batch_size=args.batch_size, segmentation=seg, gate=gate,
        errors="report",
        progress=not args.quiet, alignments=args.plot, words=args.word_timestamps or args.word_level, **overrides,
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
            text = render(data, fmt, words=args.word_level)
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
    from speech_calm.speech.alignment import AlignedSegment, plot_alignment

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
