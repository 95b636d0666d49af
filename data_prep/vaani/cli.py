"""Command line: ``python data_prep/vaani.py`` (or ``python -m data_prep.vaani``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from data_prep.vaani.audio_jobs import TRIM_MARGIN_S
from data_prep.vaani.errors import SourceUnavailable
from data_prep.vaani.pipeline import prepare
from data_prep.vaani.splits import SPLITS


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python data_prep/vaani.py",
        description="Prepare Vaani(-style) speech as 16 kHz FLAC + speaker-disjoint JSONL manifests.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  python data_prep/vaani.py --source synthetic --out data/vaani/telugu\n"
            "  python data_prep/vaani.py --source synthetic --language telugu hindi kannada tamil \\\n"
            "      --hours 0.25 --out data/vaani/multi\n"
            "  HF_TOKEN=... python data_prep/vaani.py --source hf --language telugu --out data/vaani/telugu --speakers\n"
            "  python data_prep/vaani.py --source local /data/vaani_mirror --out data/vaani/telugu\n"
        ),
    )
    p.add_argument("--source", required=True, choices=("hf", "local", "synthetic"),
                   help="hf: stream from the Hugging Face Hub (gated; needs HF_TOKEN); local: PATH; "
                        "synthetic: generate an offline Vaani-shaped corpus")
    p.add_argument("path", nargs="?",
                   help="for --source local: a Vaani parquet mirror, or a folder/TSV/CSV of audio + transcripts")
    p.add_argument("--language", nargs="+", default=["telugu"], metavar="LANG",
                   help="languages to keep (default: telugu); synthetic supports telugu hindi kannada tamil")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--hours", type=float, default=None,
                   help="hours of kept audio per language (synthetic: corpus size, default 1; others: a cap)")
    p.add_argument("--seed", type=int, default=0, help="seed for synthesis and the speaker split (default 0)")
    p.add_argument("--num-workers", type=int, default=None, help="decoding processes (default: min(4, CPUs))")
    p.add_argument("--min-duration", type=float, default=0.5, help="drop clips shorter than this (s)")
    p.add_argument("--max-duration", type=float, default=30.0, help="drop clips longer than this (s)")
    p.add_argument("--config", nargs="+", default=None,
                   help="hf: dataset config name(s) (default: the capitalised language, e.g. Telugu)")
    p.add_argument("--speakers", nargs="?", const="hub", default=None, metavar="TABLE",
                   help="join speaker IDs: hf: from the main Vaani repo; local: from TABLE (parquet/TSV/CSV "
                        "with file name and speakerID; tables inside a mirror are joined anyway)")
    p.add_argument("--split", nargs="+", default=None, metavar="SPLIT",
                   help="official splits to read (train validation test); default all")
    p.add_argument("--tts", choices=("auto", "espeak"), default="auto",
                   help="synthetic: auto also speaks the Telugu test sentences with festival's NSK voice, when "
                        "installed, as a held-out voice set (test_festival.jsonl; never trained on)")
    p.add_argument("--trim-silence", type=float, default=TRIM_MARGIN_S, metavar="SECONDS",
                   help=f"cut leading/trailing silence to this margin (default {TRIM_MARGIN_S} s)")
    p.add_argument("--keep-silence", action="store_true", help="keep clips whole (no silence trimming)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _print_summary(stats: dict[str, Any], out: Path) -> None:
    print(f"\nWrote {out}  (source: {stats['source']}, languages: {', '.join(stats['languages'])})")
    sets = [(split, stats["splits"][split]) for split in SPLITS] + list(stats.get("extra_test_sets", {}).items())
    width = max(6, *(len(name) for name, _ in sets))
    print(f"{'split':<{width}} {'hours':>8} {'utts':>7} {'speakers':>8}")
    for split, s in sets:
        print(f"{split:<{width}} {s['hours']:>8.3f} {s['utterances']:>7} {s['speakers']:>8}")
    overlap = stats.get("overlap_with_train", {})
    for split, o in overlap.items():
        print(f"{split}: {o['sentences_in_train']} of {o['sentences']} sentences also in train; "
              f"{o['words_not_in_train']} of {o['words']} words never in train")
    if stats["dropped"]:
        print("dropped: " + ", ".join(f"{k} {v}" for k, v in stats["dropped"].items()))
    run = stats.get("run", {})
    total_h = stats["total"]["hours"]
    elapsed = stats.get("elapsed_s_with_synthesis", run.get("elapsed_s"))
    if elapsed:
        print(f"time: {elapsed:.1f} s; {run.get('decoded', 0)} clips decoded, {run.get('reused', 0)} reused "
              f"from an earlier run; {total_h * 60 / max(elapsed, 1e-9):.2f} h of audio per minute")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    args = _build_parser().parse_args(argv)
    # `--language telugu /data/mirror` puts PATH among the languages (nargs="+" is greedy); a
    # language name never contains a path separator, so hand it back to PATH.
    stray = [lang for lang in args.language if os.sep in lang or os.path.exists(lang)]
    if stray and args.path is None and len(stray) == 1:
        args.path = stray[0]
        args.language = [lang for lang in args.language if lang != stray[0]] or ["telugu"]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.source == "local" and not args.path:
        print("error: --source local needs PATH (a Vaani parquet mirror or a folder with a transcript TSV/CSV)",
              file=sys.stderr)
        return 2
    if args.source != "local" and args.path:
        print(f"error: PATH is only used with --source local (got {args.path!r})", file=sys.stderr)
        return 2
    try:
        stats = prepare(
            args.source, args.out, args.language, args.path, hours=args.hours, seed=args.seed,
            num_workers=args.num_workers, min_duration=args.min_duration, max_duration=args.max_duration,
            config=args.config, speakers=args.speakers,
            splits=args.split, progress=not args.quiet, tts=args.tts,
            trim_margin=None if args.keep_silence else args.trim_silence,
        )
    except SourceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume (finished audio is reused)", file=sys.stderr)
        return 130
    _print_summary(stats, Path(args.out))
    return 0
