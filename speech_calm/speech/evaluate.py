"""How well a run transcribes and translates a manifest: the scores behind `python -m speech_calm.evaluate`.

Scores (`speech_calm.speech.metrics`): CER and WER of the transcripts (CER first: Telugu is agglutinative),
script fidelity (share of output letters in the language's script), BLEU and chrF++ of the translations (on the
utterances that have a reference translation), overall and per speaker; and beside them m_A's own greedy CTC
transcript's CER and WER (`ctc_cer`, `ctc_wer`), the baseline the composed transcript should beat. Each utterance is decoded whole, as in
training (manifest clips are utterances already; no segmentation), in duration-sorted batches, with the
`Transcriber`'s search (token cap per second of audio, loops decoded again). Hypotheses are normalised like
the references (`speech_calm.speech.indic.normalize`) before CER and WER.

Seen and unseen sentences: given the transcripts of the run's training data, the report also scores the
utterances whose sentence occurs in training ("seen") and the others ("unseen") apart, so that recall of
the training set and generalisation to new sentences are not averaged into one number.  Sentences are
compared after the normalisation the metrics use.
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

__all__ = ["evaluate", "scores", "table", "subset_scores"]

COLUMNS = (("cer", "CER"), ("wer", "WER"), ("script_fidelity", "script%"), ("bleu", "BLEU"), ("chrf", "chrF++"),
           ("ctc_cer", "m_A CER"))


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
    alone = [i for i in items if i.get("ctc_hypothesis") is not None]
    if alone:  # m_A's own greedy CTC transcripts: the part the composition should beat
        ctc = transcript_scores([i["reference"] for i in alone], [normalize(i["ctc_hypothesis"]) for i in alone],
                                script)
        out.update({"ctc_cer": ctc["cer"], "ctc_wer": ctc["wer"]})
    said = [i for i in items if i.get("translation") is not None and i.get("reference_translation")]
    if said:
        out.update(translation_scores([i["reference_translation"] for i in said], [i["translation"] for i in said]))
    return out


def subset_scores(items: Sequence[dict[str, Any]], train_texts: set[str] | frozenset[str],
                  script: str) -> dict[str, dict[str, Any]]:
    """Metrics of the items whose reference sentence occurs in `train_texts` ("seen") and of the others
    ("unseen"); each with its utterance count and minutes.  Both texts are normalised before comparing."""
    train = {normalize(t) for t in train_texts}
    groups: dict[str, list[dict[str, Any]]] = {"seen": [], "unseen": []}
    for item in items:
        groups["seen" if normalize(item["reference"]) in train else "unseen"].append(item)
    return {name: {"utterances": len(group), "minutes": sum(i["duration"] for i in group) / 60,
                   **_finite(scores(group, script))}
            for name, group in groups.items()}


def evaluate(model: Transcriber, utts: Sequence[Utterance], tasks: Sequence[str], batch_size: int = 8,
             progress: bool = False, train_texts: set[str] | frozenset[str] | None = None,
             **decoding: Any) -> dict[str, Any]:
    """Decode every utterance of `utts` for `tasks` and score them; returns the report (see module doc).

    `train_texts`: transcripts of the training data; when given, the report's "subsets" holds the scores
    of the seen and unseen sentences (else it is None)."""
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
            encoded = model.encode(waves)  # m_A once for the search and its own transcripts
            ctc = model.ctc_texts(waves, encoded) if "transcribe" in tasks else None
            for k, (i, out) in enumerate(zip(kept, model.decode(waves, tasks, d, encoded=encoded))):
                u = utts[i]
                items[i] = {
                    "id": u.id, "speaker": u.speaker, "duration": u.duration, "reference": u.text,
                    "hypothesis": out["transcribe"].text if "transcribe" in out else None,
                    "reference_translation": u.translation,
                    "translation": out["translate"].text if "translate" in out else None,
                    "ctc_hypothesis": ctc[k] if ctc is not None else None,
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
        "subsets": None if train_texts is None else subset_scores(done, train_texts, script),
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
    """The report's metrics as an aligned text table: one row for all utterances, the seen and unseen
    sentences when the report has them, one per speaker."""
    rows = [("all", report["utterances"], report["hours"] * 60, report["metrics"])]
    rows += [(f"({name} sentences)", s["utterances"], s["minutes"], s)
             for name, s in (report.get("subsets") or {}).items()]
    rows += [(spk, s["utterances"], s["minutes"], s) for spk, s in report["per_speaker"].items()]
    width = max(12, *(len(r[0]) for r in rows))
    header = f"{'speaker':<{width}} {'utts':>5} {'min':>6} " + " ".join(f"{name:>7}" for _, name in COLUMNS)
    lines = [header, "-" * len(header)]
    for name, n, minutes, metrics in rows:
        lines.append(f"{name:<{width}} {n:>5} {minutes:>6.1f} "
                     + " ".join(f"{_cell(metrics.get(key)):>7}" for key, _ in COLUMNS))
    return "\n".join(lines)
