"""Results as text: plain text, JSON, SubRip subtitles (SRT) and TSV, and atomic writing of them.

A result is what `speech_calm.infer` returns per file:
`{"path", "duration", "language", "task", "text", "translation", "segments": [{"start", "end", "text",
"translation", "no_speech_prob", "confidence", "low_confidence"}], "warnings"}`, with `text` / `translation`
None for a task that was not run.

- txt: the transcript, one line per segment; with both tasks, a blank line and then the translation.
- json: the whole result, pretty-printed (UTF-8, Telugu as is, not \\u escapes).
- srt (and vtt): one cue per segment with text; with both tasks the cue shows the transcript over the
  translation. A segment flagged `low_confidence` starts its cue with `[?] ` (LOW_CONFIDENCE_MARK).
- tsv: `start`, `end` (seconds), `text`, `translation`, one row per segment, with a header.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from speech_calm.files import atomic_write

__all__ = ["FORMATS", "LOW_CONFIDENCE_MARK", "render", "srt_time", "write_text"]

FORMATS = ("txt", "json", "srt", "vtt", "tsv")

LOW_CONFIDENCE_MARK = "[?] "  # a subtitle cue whose segment m_A heard with low confidence: check it


def srt_time(seconds: float, separator: str = ",") -> str:
    """SRT's `HH:MM:SS,mmm` (WebVTT's with separator "."; hours keep counting past 99 rather than wrap)."""
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def _one_line(text: str | None) -> str:
    """A cell or cue line: no tabs or line breaks inside (they would end the field or the cue)."""
    return " ".join((text or "").split())


def _fields(result: dict[str, Any]) -> list[str]:
    """The text fields a result carries, in display order."""
    return [key for key in ("text", "translation") if result.get(key) is not None]


def to_txt(result: dict[str, Any]) -> str:
    blocks = []
    for key in _fields(result):
        lines = [_one_line(seg[key]) for seg in result["segments"]]
        blocks.append("\n".join(line for line in lines if line))
    return "\n\n".join(blocks) + "\n"


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result, ensure_ascii=False, indent=1) + "\n"


def _cues(result: dict[str, Any], words: bool) -> list[tuple[float, float, list[str]]]:
    """(start, end, lines) of each subtitle: a segment's text fields, or with `words` each transcript word
    (from `segments[i]["words"]`) on its own."""
    if words:
        return [(w["start"], w["end"], [w["word"]]) for seg in result["segments"] for w in seg.get("words") or []]
    cues = []
    for seg in result["segments"]:
        lines = [line for line in (_one_line(seg[key]) for key in _fields(result)) if line]
        if lines and seg.get("low_confidence"):
            lines[0] = LOW_CONFIDENCE_MARK + lines[0]
        if lines:  # an empty cue is not valid; the segment produced no text (or no speech)
            cues.append((seg["start"], seg["end"], lines))
    return cues


def to_srt(result: dict[str, Any], words: bool = False) -> str:
    return "\n".join(f"{k}\n{srt_time(start)} --> {srt_time(end)}\n" + "\n".join(lines) + "\n"
                     for k, (start, end, lines) in enumerate(_cues(result, words), 1))


def to_vtt(result: dict[str, Any], words: bool = False) -> str:
    cues = [f"{srt_time(start, '.')} --> {srt_time(end, '.')}\n" + "\n".join(lines) + "\n"
            for start, end, lines in _cues(result, words)]
    return "WEBVTT\n\n" + "\n".join(cues)


def to_tsv(result: dict[str, Any]) -> str:
    rows = ["start\tend\ttext\ttranslation"]
    for seg in result["segments"]:
        rows.append(f"{seg['start']:.3f}\t{seg['end']:.3f}\t{_one_line(seg.get('text'))}\t"
                    f"{_one_line(seg.get('translation'))}")
    return "\n".join(rows) + "\n"


_RENDER = {"txt": to_txt, "json": to_json, "srt": to_srt, "vtt": to_vtt, "tsv": to_tsv}


def render(result: dict[str, Any], fmt: str, words: bool = False) -> str:
    """`result` in format `fmt` (one of FORMATS); `words`: subtitles (srt, vtt) with a cue per word (the result
    needs word timestamps)."""
    if fmt not in _RENDER:
        raise ValueError(f"unknown output format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt in ("srt", "vtt"):
        return _RENDER[fmt](result, words)
    return _RENDER[fmt](result)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically (a temporary file beside it, then rename); returns the path."""
    path = Path(path)
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
