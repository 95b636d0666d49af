"""Local sources: what PATH holds (a Vaani parquet mirror, or audio files with a transcript TSV/CSV),
the rows of a transcript table, and the marker a synthetic mirror carries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from data_prep.vaani.errors import SourceUnavailable
from data_prep.vaani.rows import (
    _ALIASES,
    _FILE_COLUMNS,
    Row,
    _canonical_fields,
    _find_column,
    _official_split,
    _read_table,
)
from data_prep.vaani.speakers import _is_speaker_table


def discover_local(path: Path) -> tuple[str, list[str], list[str]]:
    """Classify a local source: ("parquet", data files, speaker tables) or ("table", [tsv], [])."""
    path = Path(path)
    if not path.exists():
        raise SourceUnavailable(f"--source local: {path} does not exist")
    if path.is_file():
        if path.suffix.lower() == ".parquet":
            return "parquet", [str(path)], []
        if path.suffix.lower() in (".tsv", ".csv"):
            return "table", [str(path)], []
        raise SourceUnavailable(f"--source local: {path} is neither a parquet file nor a TSV/CSV transcript table")
    parquet = sorted(str(p) for p in path.rglob("*.parquet") if not p.name.startswith("."))
    if parquet:
        speakers = [p for p in parquet if _is_speaker_table(Path(p))]
        data = [p for p in parquet if p not in speakers]
        return "parquet", data, speakers
    tables = sorted(str(p) for p in path.glob("*.tsv")) + sorted(str(p) for p in path.glob("*.csv"))
    if len(tables) == 1:
        return "table", tables, []
    if len(tables) > 1:
        raise SourceUnavailable(
            f"--source local: {path} holds several transcript tables ({', '.join(Path(t).name for t in tables)}); "
            "pass the one to use as PATH"
        )
    raise SourceUnavailable(
        f"--source local: no Vaani parquet files and no transcript .tsv/.csv found under {path}"
    )


def iter_table_rows(table: Path, default_language: str | None) -> Iterator[Row]:
    """Rows of a folder of audio files described by a transcript TSV/CSV.

    Required columns: an audio path (``path``, ``file``, ``file_name`` ...) relative to the table's
    folder, and a transcript (``transcript``, ``text``, ``sentence``).  Optional: ``language``,
    ``speaker``/``speakerID``, ``gender``, ``state``, ``district``, ``translation``, ``split``.
    Without a speaker column the audio file's parent folder names the speaker, when there is one.
    """
    table = Path(table)
    root = table.parent.resolve()
    records = _read_table(table)
    if not records:
        return
    file_col = _find_column(records[0].keys(), _FILE_COLUMNS)
    text_col = _find_column(records[0].keys(), _ALIASES["transcript"])
    if file_col is None or text_col is None:
        raise SourceUnavailable(
            f"{table}: needs an audio path column (one of {', '.join(_FILE_COLUMNS)}) and a transcript "
            f"column (one of {', '.join(_ALIASES['transcript'])}); found {', '.join(records[0].keys())}"
        )
    if default_language is None and _find_column(records[0].keys(), _ALIASES["language"]) is None:
        raise SourceUnavailable(
            f"{table}: no language column, so it cannot serve several --language values; add a "
            "'language' column or request one language"
        )
    for index, record in enumerate(records):
        rel = (record.get(file_col) or "").strip()
        fields = _canonical_fields({k: (v if v != "" else None) for k, v in record.items() if k != file_col})
        fields["transcript"] = record.get(text_col)
        if "language" not in fields and default_language:
            fields["language"] = default_language
        row = Row(key=rel or f"{table.name}#{index}", audio=None, audio_path=rel, fields=fields,
                  split=_official_split(fields.pop("split", None)))
        if not rel:
            row.error = "missing_audio: no audio path in the table"
            yield row
            continue
        target = (root / rel).resolve()
        # Input paths come from the data: refuse any that leave the dataset folder.
        if not target.is_relative_to(root):
            row.error = f"unsafe_path: {rel!r} points outside {root}"
            yield row
            continue
        if "speakerID" not in fields and target.parent != root:
            fields["speakerID"] = target.parent.name
        try:
            row.audio = target.read_bytes()
        except OSError as exc:
            row.error = f"missing_audio: {rel}: {exc.strerror or exc}"
        yield row


def _read_synthetic_marker(path: Path) -> dict[str, Any] | None:
    """The description data_prep/synthetic.py leaves in a mirror it wrote (None for real data)."""
    marker = (path if path.is_dir() else path.parent) / "SYNTHETIC.json"
    if marker.is_file():
        return json.loads(marker.read_text(encoding="utf-8"))
    return None
