"""Screening rows in source order: the cheap checks (language, transcript and script, audio header,
duration, duplicates), safe output ids, and the bookkeeping of kept candidates and dropped rows."""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import soundfile as sf

from data_prep.vaani.audio_jobs import _Job, _WorkLog
from data_prep.vaani.rows import Row
from speech_calm.speech.indic import language_code, normalize, script_fraction

log = logging.getLogger("data_prep.vaani")  # one logger for the whole package, as before the split

DROP_REASONS = (
    "wrong_language", "empty_transcript", "wrong_script", "unsafe_path", "missing_audio",
    "unreadable_audio", "empty_audio", "silent_audio", "too_short", "too_long", "duplicate",
    "unreadable_file",
)
# A transcript is kept when at least this share of its letters is in the language's script
# (braced English glosses are removed before the check, so code-switching does not count against it).
MIN_SCRIPT_FRACTION = 0.8
_SAFE_ID_RE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class _Candidate:
    """A row that passed the cheap checks and awaits (or has) its decoded audio."""

    id: str
    sha1: str
    language: str
    raw: str
    fields: dict[str, Any]
    split: str | None
    file_name: str | None
    samples: int | None = None


@dataclass
class _State:
    dropped: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    rows_seen: int = 0
    over_cap: Counter = field(default_factory=Counter)
    reused: int = 0
    decoded: int = 0

    def drop(self, reason: str, message: str | None = None) -> None:
        self.dropped[reason] += 1
        if message and len(self.errors) < 50:
            self.errors.append(message)
            log.debug("dropped (%s): %s", reason, message)


def _safe_id(language: str, audio_path: str | None, key: str) -> str:
    """A file-system-safe id from the row's audio file name: only [A-Za-z0-9_-], never a path.

    Whatever the data says (``../../etc/x.wav``, ``C:\\x.wav``, an empty name), the output is
    ``OUT/audio/<id>.flac`` with no separator or leading dot in ``<id>``.
    """
    name = PurePosixPath((audio_path or key).replace("\\", "/")).name
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    stem = _SAFE_ID_RE.sub("_", stem).strip("_")[:100]
    if not stem:
        stem = hashlib.sha1(key.encode()).hexdigest()[:16]
    return f"{language_code(language)}_{stem}"


def _screen(
    row: Row, languages: list[str], out: Path, state: _State, seen_sha1: set[str],
    candidates: dict[str, _Candidate], min_duration: float, max_duration: float,
    hours: float | None, kept_seconds: Counter, trim: float | None = None,
) -> tuple[_Candidate | None, _Job | None]:
    """Cheap, sequential checks in source order (so results do not depend on worker timing)."""
    if row.error:
        reason = row.error.split(":", 1)[0]
        state.drop(reason if reason in DROP_REASONS else "unreadable_file", row.error)
        return None, None
    language = str(row.fields.get("language") or "").strip().lower()
    if language not in languages:
        state.drop("wrong_language", f"{row.key}: language {language or 'missing'!r}")
        return None, None
    if hours is not None and kept_seconds[language] >= hours * 3600:
        state.over_cap[language] += 1
        return None, None
    raw = row.fields.get("transcript")
    raw = raw.strip() if isinstance(raw, str) else ""
    text = normalize(raw)
    if not text:
        state.drop("empty_transcript", f"{row.key}: empty transcript")
        return None, None
    if script_fraction(text, language) < MIN_SCRIPT_FRACTION:
        state.drop("wrong_script", f"{row.key}: transcript not in {language} script: {text[:40]!r}")
        return None, None
    if not row.audio:
        state.drop("missing_audio" if row.audio is None else "empty_audio", f"{row.key}: no audio bytes")
        return None, None
    try:
        info = sf.info(io.BytesIO(row.audio))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        state.drop("unreadable_audio", f"{row.key}: cannot read audio header ({exc})")
        return None, None
    if info.frames <= 0 or info.samplerate <= 0:
        state.drop("empty_audio", f"{row.key}: audio has no samples")
        return None, None
    seconds = info.frames / info.samplerate
    if seconds < min_duration:
        state.drop("too_short", f"{row.key}: {seconds:.2f} s < {min_duration} s")
        return None, None
    if seconds > max_duration:
        state.drop("too_long", f"{row.key}: {seconds:.2f} s > {max_duration} s")
        return None, None
    sha1 = hashlib.sha1(row.audio).hexdigest()
    if sha1 in seen_sha1:
        state.drop("duplicate", f"{row.key}: same audio as an earlier row")
        return None, None
    seen_sha1.add(sha1)
    cid = _safe_id(language, row.audio_path, row.key)
    if cid in candidates:  # same file name, different audio: keep both, disambiguated
        cid = f"{cid}_{sha1[:8]}"
    out_path = out / "audio" / f"{cid}.flac"
    # Defence in depth: the id is sanitised, but check the final path anyway.
    if not out_path.resolve().is_relative_to((out / "audio").resolve()):
        state.drop("unsafe_path", f"{row.key}: output path would leave {out}")
        return None, None
    kept_seconds[language] += seconds
    file_name = PurePosixPath(row.audio_path.replace("\\", "/")).name if row.audio_path else None
    cand = _Candidate(id=cid, sha1=sha1, language=language, raw=raw, fields=row.fields, split=row.split,
                      file_name=file_name)
    candidates[cid] = cand
    return cand, _Job(cid, row.audio, row.audio_path or row.key, str(out_path), trim)


def _finish(cand: _Candidate, result: dict[str, Any], worklog: _WorkLog | None, state: _State,
            candidates: dict[str, _Candidate]) -> None:
    if worklog is not None:
        worklog.add(cand.id, cand.sha1, result)
    if result.get("ok"):
        cand.samples = int(result["samples"])
    else:
        candidates.pop(cand.id, None)
        state.drop(result.get("reason", "unreadable_audio"), result.get("error"))
