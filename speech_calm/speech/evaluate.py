"""How well a run transcribes and translates a manifest: the scores behind `python -m speech_calm.evaluate`.

Scores (`speech_calm.speech.metrics`): CER and WER of the transcripts (CER first: Telugu is agglutinative),
script fidelity (share of output letters in the language's script), BLEU and chrF++ of the translations (on the
utterances that have a reference translation), overall and per speaker. Each utterance is decoded whole, as in
training (manifest clips are utterances already; no segmentation), in duration-sorted batches, with the
`Transcriber`'s search (token cap per second of audio, loops decoded again). Hypotheses are normalised like
the references (`speech_calm.speech.indic.normalize`) before CER and WER.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from speech_calm.core.batch import chunks
from speech_calm.metrics import translation_scores
from speech_calm.schema import to_dict
from speech_calm.speech.audio import AudioError
from speech_calm.speech.data import Utterance
from speech_calm.speech.indic import language_script, normalize
from speech_calm.speech.metrics import transcript_scores
from speech_calm.speech.transcribe import Transcriber

__all__ = ["evaluate", "scores", "table"]

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
