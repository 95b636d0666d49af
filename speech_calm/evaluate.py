"""python -m speech_calm.evaluate RUN_DIR MANIFEST.jsonl: how well a run transcribes and translates a manifest
(CER, WER, script fidelity, BLEU, chrF++, overall and per speaker; see `speech_calm.speech.evaluate`).

Writes a JSON report (default RUN_DIR/eval/<manifest name>.json, atomically) with the metrics, the
per-speaker breakdown, every hypothesis and the utterances that could not be read, and prints a table.
The run's training manifests (each of the recipe's `data.dirs`, its train.jsonl) tell which sentences it
was trained on: the report adds the scores of the seen and unseen sentences ("subsets"); when those
manifests cannot be found, it says so and reports the whole set only.
Exit code 0; 1 when some utterances could not be read (the metrics then cover the others, as the report
says); 2 for a usage or model error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from speech_calm.files import write_json
from speech_calm.infer import load
from speech_calm.schema import ConfigError
from speech_calm.speech.data import read_manifest
from speech_calm.speech.evaluate import evaluate, table


def training_texts(dirs: list[str]) -> tuple[set[str] | None, str]:
    """The transcripts of the train manifests in `dirs` (a recipe's data.dirs), and a note naming the
    manifests read, or (None, why not) when one is missing: a partial list would call unseen what the
    run did see."""
    paths = [Path(d) / "train.jsonl" for d in dirs]
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        return None, f"training manifests not found ({', '.join(missing) or 'the recipe names no data dirs'})"
    texts = {u.text for p in paths for u in read_manifest(p)}
    return texts, ", ".join(str(p) for p in paths)


def sweep_table(sweep: list[dict]) -> str:
    """One row per CTC weight: the transcript's CER and WER (all, and unseen sentences), chrF++."""
    lines = [f"{'ctc_weight':>10} {'CER':>6} {'WER':>6} {'CER unseen':>10} {'chrF++':>7} {'seconds':>8}"]
    for row in sweep:
        m, unseen = row["metrics"], (row["subsets"] or {}).get("unseen") or {}

        def cell(v: object) -> str:
            return f"{v:.1f}" if isinstance(v, (int, float)) else "-"
        lines.append(f"{row['ctc_weight']:>10.2f} {cell(m.get('cer')):>6} {cell(m.get('wer')):>6} "
                     f"{cell(unseen.get('cer')):>10} {cell(m.get('chrf')):>7} {row['seconds']:>8.0f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m speech_calm.evaluate",
        description="Score a run on a manifest: CER, WER, script fidelity, BLEU, chrF++, per speaker.",
        epilog="example: python -m speech_calm.evaluate runs/telugu data/vaani/telugu/test.jsonl",
    )
    p.add_argument("run_dir", help="a run directory made by python -m speech_calm.train")
    p.add_argument("manifest", help="a JSONL manifest (data_prep/vaani.py writes train/dev/test.jsonl)")
    p.add_argument("--tasks", nargs="+", choices=("transcribe", "translate"), default=None,
                   help="default: the tasks the run was trained on (translate only where references exist)")
    p.add_argument("--out", type=Path, default=None, help="report path (default RUN_DIR/eval/<manifest>.json)")
    p.add_argument("--limit", type=int, default=None, help="only the first N utterances")
    p.add_argument("--batch-size", type=int, default=8, help="utterances decoded together (default 8)")
    p.add_argument("--beam", type=int, default=None, help="beam size (default: the recipe's)")
    p.add_argument("--ctc-weight", type=float, nargs="+", default=None, metavar="W",
                   help="weight of m_A's CTC prefix scores in the transcript's search (default: the recipe's); "
                        "several values run a sweep and print one row per weight: choose on dev, then set "
                        "compose.decoding.ctc_weight")
    p.add_argument("--no-draft", action="store_true", help="decode token by token (same output, slower)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        if args.threads is not None:
            torch.set_num_threads(max(1, args.threads))
        if args.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
        utts = read_manifest(args.manifest)[: args.limit]
        if not utts:
            raise ValueError(f"{args.manifest} has no utterances")
        model = load(args.run_dir, args.device, args.dtype)
        tasks = args.tasks or list(model.recipe.compose.tasks)
        if "translate" in tasks and not any(u.translation for u in utts):
            tasks = [t for t in tasks if t != "translate"]  # nothing to score a translation against
        if not tasks:
            raise ValueError(f"{args.manifest} has no reference translations and --tasks asked only for translate")
        train_texts, train_note = training_texts(model.recipe.data.dirs)
        if train_texts is None:
            print(f"note: {train_note}; reporting the whole set only (no seen/unseen split)", file=sys.stderr)
        weights = args.ctc_weight or [None]
        runs = [evaluate(model, utts, tasks, args.batch_size, progress=not args.quiet, beam_size=args.beam,
                         train_texts=train_texts, ctc_weight=w, draft=False if args.no_draft else None)
                for w in weights]
        report = runs[0]
        if len(runs) > 1:
            report["sweep"] = [{"ctc_weight": r["decoding"]["ctc_weight"], "metrics": r["metrics"],
                                "subsets": r["subsets"], "seconds": r["seconds"]} for r in runs]
        report["train_manifests"] = train_note
    except (ConfigError, FileNotFoundError, OSError, TypeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report["manifest"] = str(args.manifest)
    out = args.out or Path(args.run_dir) / "eval" / f"{Path(args.manifest).stem}.json"
    write_json(out, report)
    print(f"{args.run_dir} on {args.manifest}: {report['utterances']} utterances, {report['hours'] * 60:.1f} min "
          f"of audio, decoded in {report['seconds']:.0f} s ({report['audio_seconds_per_second']:.1f}x real time)")
    print(table(report))
    if "sweep" in report:
        print(sweep_table(report["sweep"]))
    print(f"report: {out}")
    for f in report["failed"]:
        print(f"error: {f['error']}", file=sys.stderr)
    if report["failed"]:
        print(f"{len(report['failed'])} utterance(s) could not be read; the metrics cover the other "
              f"{report['utterances']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
