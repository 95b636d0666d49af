"""What a run writes: manifest records, the contents of stats.json, atomic text files, and the
removal of audio no manifest references."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from data_prep.vaani.screening import _Candidate, _State
from data_prep.vaani.splits import SPLITS, _split_methods, _split_stats
from speech_calm.files import atomic_write
from speech_calm.speech.audio import SAMPLE_RATE
from speech_calm.speech.indic import code_switched, normalize

MANIFEST_KEYS = (
    "id", "audio", "duration", "text", "text_raw", "text_code_switched", "translation",
    "speaker", "gender", "language", "state", "district", "source",
)


def _norm_gender(value: Any) -> str | None:
    if value is None:
        return None
    v = str(value).strip().lower()
    return {"m": "male", "male": "male", "f": "female", "female": "female"}.get(v, v or None)


def _make_records(candidates: dict[str, _Candidate], source_label: str, min_duration: float,
                  max_duration: float, state: _State) -> list[dict[str, Any]]:
    records = []
    for cid in sorted(candidates):
        c = candidates[cid]
        if c.samples is None:
            continue
        duration = round(c.samples / SAMPLE_RATE, 4)
        # The header can lie about length; the decoded length is the truth.
        if duration < min_duration:
            state.drop("too_short", f"{cid}: decoded length {duration} s")
            continue
        if duration > max_duration:
            state.drop("too_long", f"{cid}: decoded length {duration} s")
            continue
        translation = c.fields.get("translation")
        speaker = c.fields.get("speakerID")
        records.append({
            "id": cid,
            "audio": f"audio/{cid}.flac",
            "duration": duration,
            "text": normalize(c.raw),
            "text_raw": c.raw,
            "text_code_switched": code_switched(c.raw),
            "translation": translation.strip() if isinstance(translation, str) and translation.strip() else None,
            "speaker": str(speaker) if speaker not in (None, "") else None,
            "gender": _norm_gender(c.fields.get("gender")),
            "language": c.language,
            "state": c.fields.get("state"),
            "district": c.fields.get("district"),
            "source": source_label,
            "_split": c.split,
            "_file": c.file_name,
        })
    return records


def _stats(records: list[dict[str, Any]], by_split: dict[str, list[dict[str, Any]]], split_of: dict[str, str],
           state: _State, source_label: str, languages: list[str], seed: int, min_duration: float,
           max_duration: float, hours: float | None, trim: float | None = None) -> dict[str, Any]:
    """The contents of stats.json: only facts that a rerun reproduces exactly."""
    speaker_splits: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r["speaker"] is not None:
            speaker_splits[f"{r['language']}/{r['speaker']}"].add(split_of[r["id"]])
    return {
        "source": source_label,
        "languages": list(languages),
        "seed": seed,
        "sample_rate": SAMPLE_RATE,
        "min_duration": min_duration,
        "max_duration": max_duration,
        "trim_silence": trim,
        "hours_cap_per_language": hours,
        "splits": {s: _split_stats(by_split[s]) for s in SPLITS},
        "extra_test_sets": {s: _split_stats(rs) for s, rs in sorted(by_split.items()) if s not in SPLITS},
        "overlap_with_train": _overlap_with_train(by_split),
        "total": _split_stats(records),
        "dropped": {reason: state.dropped[reason] for reason in sorted(state.dropped)},
        "dropped_total": sum(state.dropped.values()),
        "rows_seen": state.rows_seen,
        "not_used_over_hours_cap": sum(state.over_cap.values()),
        "split_method": _split_methods(records),
        "speakers_in_several_splits": sum(1 for v in speaker_splits.values() if len(v) > 1),
        "utterances_without_speaker": sum(1 for r in records if r["speaker"] is None),
    }


def _overlap_with_train(by_split: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, int]]:
    """For each held-out split: how many of its sentences (normalised transcripts, as the metrics compare
    them) and words also occur in train, per language.  0 sentences means a test of unseen sentences."""
    train: dict[str, set[str]] = defaultdict(set)
    train_words: dict[str, set[str]] = defaultdict(set)
    for r in by_split.get("train", []):
        train[r["language"]].add(r["text"])
        train_words[r["language"]].update(r["text"].split())
    out: dict[str, dict[str, int]] = {}
    for split, recs in sorted(by_split.items()):
        if split == "train":
            continue
        sentences = {(r["language"], r["text"]) for r in recs}
        words = {(r["language"], w) for r in recs for w in r["text"].split()}
        out[split] = {
            "utterances": len(recs),
            "utterances_in_train": sum(r["text"] in train[r["language"]] for r in recs),
            "sentences": len(sentences),
            "sentences_in_train": sum(text in train[lang] for lang, text in sentences),
            "words": len(words),
            "words_not_in_train": sum(w not in train_words[lang] for lang, w in words),
        }
    return out


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _remove_orphans(audio_dir: Path, keep_ids: set[str]) -> None:
    """Delete FLACs no manifest references (from earlier runs with other settings) and temp files."""
    for p in audio_dir.iterdir():
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            p.unlink(missing_ok=True)
        elif p.suffix == ".flac" and p.stem not in keep_ids:
            p.unlink(missing_ok=True)
