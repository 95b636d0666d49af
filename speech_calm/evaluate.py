"""python -m speech_calm.evaluate RUN_DIR MANIFEST.jsonl: how well a run transcribes and translates a manifest.

Scores (`speech_calm.metrics`): CER and WER of the transcripts (CER first: Telugu is agglutinative), script
fidelity (share of output letters in the language's script), BLEU and chrF++ of the translations (on the
utterances that have a reference translation), overall and per speaker. Each utterance is decoded whole, as
in training (manifest clips are utterances already; no segmentation), in duration-sorted batches, with the
search of `speech_calm.infer` (token cap per second of audio, loops decoded again).
Hypotheses are normalised like the references (`speech_calm.text.normalize`) before CER and WER.

Writes a JSON report (default RUN_DIR/eval/<manifest name>.json, atomically) with the metrics, the
per-speaker breakdown, every hypothesis and the utterances that could not be read, and prints a table.
Exit code 0; 1 when some utterances could not be read (the metrics then cover the others, as the report
says); 2 for a usage or model error.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from speech_calm.audio import AudioError
from speech_calm.checkpoint import write_json
from speech_calm.config import ConfigError, to_dict
from speech_calm.data import Utterance, chunks, read_manifest
from speech_calm.infer import Transcriber, load
from speech_calm.metrics import transcript_scores, translation_scores
from speech_calm.text import language_script, normalize

__all__ = ["evaluate", "main", "scores", "table"]

COLUMNS = (("cer", "CER"), ("wer", "WER"), ("script_fidelity", "script%"), ("bleu", "BLEU"), ("chrf", "chrF++"))


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    """NaN (no reference to score against) as None, so the report is valid JSON."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()}


def scores(items: Sequence[dict[str, Any]], script: str) -> dict[str, float]:
    """Metrics over decoded items ({"reference", "hypothesis", "reference_translation", "translation"})."""
    out: dict[str, float] = {}
    heard = [i for i in items if i.get("hypothesis") is not None]
    if heard:
        out.update(transcript_scores([i["reference"] for i in heard],
                                     [normalize(i["hypothesis"]) for i in heard], script))
    said = [i for i in items if i.get("translation") is not None and i.get("reference_translation")]
    if said:
        out.update(translation_scores([i["reference_translation"] for i in said], [i["translation"] for i in said]))
    return out


def evaluate(model: Transcriber, utts: Sequence[Utterance], tasks: Sequence[str], batch_size: int = 8,
             progress: bool = False, **decoding: Any) -> dict[str, Any]:
    """Decode every utterance of `utts` for `tasks` and score them; returns the report (see module doc)."""
    t0 = time.time()
    d = model.decoding_for(max((u.duration for u in utts), default=1.0), **decoding)
    order = sorted(range(len(utts)), key=lambda i: -utts[i].duration)  # similar lengths share a batch
    items: list[dict[str, Any] | None] = [None] * len(utts)
    failed = []
    from tqdm import tqdm

    bar = tqdm(total=len(utts), desc="evaluating", unit="utt", disable=not progress, dynamic_ncols=True)
    for group in chunks(order, batch_size):
        waves, kept = [], []
        for i in group:
            try:
                waves.append(model.load_audio(utts[i].audio, name=f"{utts[i].id} ({utts[i].audio})"))
                kept.append(i)
            except AudioError as e:
                failed.append({"id": utts[i].id, "audio": utts[i].audio, "error": str(e)})
        if waves:
            for i, out in zip(kept, model.decode(waves, tasks, d)):
                u = utts[i]
                items[i] = {
                    "id": u.id, "speaker": u.speaker, "duration": u.duration, "reference": u.text,
                    "hypothesis": out["transcribe"].text if "transcribe" in out else None,
                    "reference_translation": u.translation,
                    "translation": out["translate"].text if "translate" in out else None,
                }
        bar.update(len(group))
    bar.close()
    done = [i for i in items if i is not None]
    script = language_script(model.language)
    by_speaker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in done:
        by_speaker[item["speaker"] or "(none)"].append(item)
    seconds = time.time() - t0
    audio_seconds = sum(i["duration"] for i in done)
    return {
        "run_dir": str(model.run_dir),
        "utterances": len(done),
        "hours": audio_seconds / 3600,
        "tasks": list(tasks),
        "decoding": to_dict(d),
        "metrics": _finite(scores(done, script)),
        "per_speaker": {
            spk: {"utterances": len(group), "minutes": sum(i["duration"] for i in group) / 60,
                  **_finite(scores(group, script))}
            for spk, group in sorted(by_speaker.items())
        },
        "failed": failed,
        "seconds": seconds,
        "audio_seconds_per_second": audio_seconds / max(seconds, 1e-9),
        "items": done,
    }


def _cell(value: Any) -> str:
    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.1f}"


def table(report: dict[str, Any]) -> str:
    """The report's metrics as an aligned text table: one row for all utterances, one per speaker."""
    rows = [("all", report["utterances"], report["hours"] * 60, report["metrics"])]
    rows += [(spk, s["utterances"], s["minutes"], s) for spk, s in report["per_speaker"].items()]
    width = max(12, *(len(r[0]) for r in rows))
    header = f"{'speaker':<{width}} {'utts':>5} {'min':>6} " + " ".join(f"{name:>7}" for _, name in COLUMNS)
    lines = [header, "-" * len(header)]
    for name, n, minutes, metrics in rows:
        lines.append(f"{name:<{width}} {n:>5} {minutes:>6.1f} "
                     + " ".join(f"{_cell(metrics.get(key)):>7}" for key, _ in COLUMNS))
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
        report = evaluate(model, utts, tasks, args.batch_size, progress=not args.quiet, beam_size=args.beam)
    except (ConfigError, FileNotFoundError, OSError, TypeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report["manifest"] = str(args.manifest)
    out = args.out or Path(args.run_dir) / "eval" / f"{Path(args.manifest).stem}.json"
    write_json(out, report)
    print(f"{args.run_dir} on {args.manifest}: {report['utterances']} utterances, {report['hours'] * 60:.1f} min "
          f"of audio, decoded in {report['seconds']:.0f} s ({report['audio_seconds_per_second']:.1f}x real time)")
    print(table(report))
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
