"""Inference throughput: seconds of audio transcribed per wall-clock second, at batch 1 and batch 8, in one run.

    python benchmarks/infer_speed.py runs/telugu
    python -m benchmarks.infer_speed runs/telugu --manifest data/vaani/telugu/test.jsonl --files 24 --task both

End to end through `Transcriber.transcribe` (read, resample, segment, decode), on the same files for every
batch size. Batch sizes take turns for `--repeats` rounds and the best round of each is reported, because
these machines are shared and noisy; the ratio to batch 1 is the number to compare across machines.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from speech_calm.infer import load
from speech_calm.speech.data import read_manifest
from speech_calm.speech.transcribe import TASK_CHOICES


def default_manifest(model: object) -> Path:
    """The test split of the run's first data directory."""
    dirs = model.recipe.data.dirs  # type: ignore[attr-defined]
    return Path(dirs[0]) / "test.jsonl"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Throughput of speech_calm.infer at several batch sizes.")
    p.add_argument("run_dir")
    p.add_argument("--manifest", default=None, help="audio to decode (default: the run's first data dir, test split)")
    p.add_argument("--files", type=int, default=16, help="files from the manifest (default 16)")
    p.add_argument("--task", choices=TASK_CHOICES, default="transcribe")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=2, help="rounds per batch size; the best is reported")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    model = load(args.run_dir, args.device)
    manifest = Path(args.manifest) if args.manifest else default_manifest(model)
    utts = read_manifest(manifest)[: args.files]
    if not utts:
        print(f"error: {manifest} has no utterances", file=sys.stderr)
        return 1
    paths = [u.audio for u in utts]
    audio_seconds = sum(u.duration for u in utts)
    model.transcribe(paths[:1], args.task)  # warm-up: first calls allocate and pick kernels
    best = {b: float("inf") for b in args.batch_sizes}
    for _ in range(args.repeats):
        for b in args.batch_sizes:
            t0 = time.perf_counter()
            model.transcribe(paths, args.task, batch_size=b)
            best[b] = min(best[b], time.perf_counter() - t0)
    print(f"{args.run_dir} on {model.device} ({torch.get_num_threads()} threads), task {args.task}: "
          f"{len(paths)} files, {audio_seconds:.1f} s of audio from {manifest}")
    print(f"{'batch':>5} {'wall s':>8} {'audio s / wall s':>17} {'vs batch ' + str(args.batch_sizes[0]):>11}")
    base = best[args.batch_sizes[0]]
    for b in args.batch_sizes:
        print(f"{b:>5} {best[b]:>8.1f} {audio_seconds / best[b]:>17.2f} {base / best[b]:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
