"""Inference speed and quality of the three searches side by side, in one run, on a trained run's test files:
plain greedy (one anchor forward per token), drafted greedy (the anchor verifies m_A's CTC transcript several
tokens per forward: the same output) and joint CTC/anchor scoring (drafted, with `--ctc-weight`).

    python benchmarks/infer_speed.py runs/telugu
    python -m benchmarks.infer_speed runs/telugu --task both --files 24 --ctc-weight 0.3

For each search and batch size: seconds of audio per wall-clock second end to end through
`Transcriber.transcribe` (read, resample, segment, decode), anchor forwards per utterance, the share of draft
tokens the anchor kept, CER (and for `--task both` chrF++) against the manifest's references. Searches and
batch sizes take turns for `--repeats` rounds and the best round of each is reported, because these machines
are shared and noisy; ratios within one run are the numbers to compare across machines.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from speech_calm.core.decoding import DecodeStats
from speech_calm.infer import load
from speech_calm.metrics import translation_scores
from speech_calm.speech.data import read_manifest
from speech_calm.speech.indic import language_script, normalize
from speech_calm.speech.metrics import transcript_scores
from speech_calm.speech.transcribe import TASK_CHOICES


def default_manifest(model: object) -> Path:
    """The test split of the run's first data directory."""
    dirs = model.recipe.data.dirs  # type: ignore[attr-defined]
    return Path(dirs[0]) / "test.jsonl"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Plain, drafted and joint search of speech_calm.infer side by side.")
    p.add_argument("run_dir")
    p.add_argument("--manifest", default=None, help="audio to decode (default: the run's first data dir, test split)")
    p.add_argument("--files", type=int, default=16, help="files from the manifest (default 16)")
    p.add_argument("--task", choices=TASK_CHOICES, default="transcribe")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--ctc-weight", type=float, default=0.3, help="the joint search's CTC weight (default 0.3)")
    p.add_argument("--repeats", type=int, default=2, help="rounds per setting; the best is reported")
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
    searches = {"plain": {"draft": False, "ctc_weight": 0.0}, "drafted": {"draft": True, "ctc_weight": 0.0},
                f"joint {args.ctc_weight:g}": {"draft": True, "ctc_weight": args.ctc_weight}}
    model.transcribe(paths[:1], args.task)  # warm-up: first calls allocate and pick kernels
    best: dict[tuple[str, int], float] = {}
    stats: dict[tuple[str, int], DecodeStats] = {}
    outputs: dict[tuple[str, int], list[dict]] = {}
    for _ in range(args.repeats):
        for name, settings in searches.items():
            for b in args.batch_sizes:
                model.stats = DecodeStats()
                t0 = time.perf_counter()
                results = model.transcribe(paths, args.task, batch_size=b, **settings)
                wall = time.perf_counter() - t0
                if wall < best.get((name, b), float("inf")):
                    best[(name, b)], stats[(name, b)], outputs[(name, b)] = wall, model.stats, results
    script = language_script(model.language)
    print(f"{args.run_dir} on {model.device} ({torch.get_num_threads()} threads), task {args.task}: "
          f"{len(paths)} files, {audio_seconds:.1f} s of audio from {manifest}")
    header = (f"{'search':<12} {'batch':>5} {'wall s':>7} {'audio s/s':>9} {'vs plain 1':>10} {'fwd/utt':>8} "
              f"{'accept':>7} {'CER':>6} {'chrF++':>7} {'same as plain':>13}")
    print(header)
    print("-" * len(header))
    base = best[("plain", args.batch_sizes[0])]
    for name in searches:
        for b in args.batch_sizes:
            results, st = outputs[(name, b)], stats[(name, b)]
            texts = [r.get("text") or "" for r in results]
            cer = (transcript_scores([u.text for u in utts], [normalize(t) for t in texts], script)["cer"]
                   if args.task != "translate" else float("nan"))
            refs = [(u.translation, r.get("translation") or "") for u, r in zip(utts, results) if u.translation]
            chrf = translation_scores(*map(list, zip(*refs)))["chrf"] if refs and args.task != "transcribe" \
                else float("nan")
            plain = outputs[("plain", b)]
            same = sum(r.get("text") == q.get("text") and r.get("translation") == q.get("translation")
                       for r, q in zip(results, plain))
            print(f"{name:<12} {b:>5} {best[(name, b)]:>7.1f} {audio_seconds / best[(name, b)]:>9.2f} "
                  f"{base / best[(name, b)]:>10.2f} {st.forwards / max(st.items, 1):>8.1f} "
                  f"{100 * st.acceptance:>6.1f}% {cer:>6.1f} {chrf:>7.1f} {same:>6}/{len(results):<6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
