"""Source rows: the ``Row`` every source yields, column aliases, split names, and readers of
Vaani-format parquet files, ``datasets`` streams and transcript tables (shared by every source)."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator

# Columns never copied anywhere: personal data in the main Vaani dataset.
PRIVATE_COLUMNS = frozenset({"pincode", "speakerImageHash"})
_OFFICIAL_SPLITS = {"train": "train", "validation": "dev", "valid": "dev", "dev": "dev", "test": "test"}
_SPLIT_FILE_RE = re.compile(r"^(train|validation|valid|dev|test)(?=[-_.])", re.IGNORECASE)
_AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif"}
# Column aliases: Vaani configs, mirrors and user tables do not agree on names.
_ALIASES = {
    "transcript": ("transcript", "transcription", "text", "sentence"),
    "language": ("language", "lang"),
    "gender": ("gender", "sex"),
    "state": ("state",),
    "district": ("district",),
    "translation": ("translation", "english"),
    "speakerID": ("speakerID", "speaker_id", "speaker", "client_id"),
    "split": ("split",),
}
_FILE_COLUMNS = ("file_name", "filename", "file", "path", "audio_path", "audio.path", "audio")


@dataclass
class Row:
    """One source row before processing.

    key: stable identity in the source (file name, or ``file#row``), used for resuming;
    audio: the encoded audio file bytes (None when missing); audio_path: the path the data gives for
    the audio (untrusted, only its base name is used); fields: metadata by canonical name
    (``transcript``, ``language``, ``gender``, ``state``, ``district``, ``translation``,
    ``speakerID``); split: official split (train/dev/test) or None; error: why the row could not be
    read at all (counted under that reason).
    """

    key: str
    audio: bytes | None
    audio_path: str | None
    fields: dict[str, Any]
    split: str | None = None
    error: str | None = None


def _canonical_fields(record: dict[str, Any]) -> dict[str, Any]:
    """Map a source record's columns onto canonical names; private columns are never copied."""
    out: dict[str, Any] = {}
    for name, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in record and record[alias] is not None and alias not in PRIVATE_COLUMNS:
                out[name] = record[alias]
                break
    return out


# Extra test sets beside the three splits (e.g. ``test_festival``: the test sentences in a voice no
# training data has): never trained on, written as their own manifest ``<name>.jsonl``.
_EXTRA_TEST_RE = re.compile(r"^test_[a-z0-9]+$")


def _official_split(value: str | None) -> str | None:
    """train/dev/test from a split name (``validation`` and ``valid`` are dev), an extra test set's own
    name (``test_<name>``), or None for anything else."""
    if value is None:
        return None
    name = str(value).strip().lower()
    if _EXTRA_TEST_RE.match(name):
        return name
    return _OFFICIAL_SPLITS.get(name)


def _split_from_path(path: str) -> str | None:
    """Official split encoded in a parquet file's name (``train-00000-of-00004.parquet``) or folder."""
    p = PurePosixPath(path.replace("\\", "/"))
    match = _SPLIT_FILE_RE.match(p.name)
    if match:
        return _official_split(match.group(1))
    return _official_split(p.parent.name)


def _audio_from_value(value: Any) -> tuple[bytes | None, str | None]:
    """(bytes, path) from a Vaani audio cell: a {bytes, path} struct, raw bytes, or a path string."""
    if isinstance(value, dict):
        data = value.get("bytes")
        return (bytes(data) if data is not None else None), value.get("path")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value), None
    if isinstance(value, str):
        return None, value
    return None, None


def iter_parquet_rows(
    files: list[str], open_file: Callable[[str], Any] = open, batch_size: int = 32
) -> Iterator[Row]:
    """Rows of Vaani-format parquet files, read a batch at a time (never a whole file in memory).

    ``open_file`` opens a path for binary reading: the built-in ``open`` for a mirror on disk,
    ``HfFileSystem().open`` for the Hub.  A file that cannot be read yields one ``Row`` with an error.
    """
    import pyarrow.parquet as pq

    for path in files:
        split = _split_from_path(path)
        try:
            with open_file(path, "rb") as fh:
                pf = pq.ParquetFile(fh)
                names = set(pf.schema_arrow.names)
                columns = [c for c in pf.schema_arrow.names if c not in PRIVATE_COLUMNS]
                index = 0
                for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
                    for record in batch.to_pylist():
                        audio, audio_path = _audio_from_value(record.get("audio"))
                        key = Path(audio_path).name if audio_path else f"{Path(path).name}#{index}"
                        yield Row(
                            key=key,
                            audio=audio,
                            audio_path=audio_path,
                            fields=_canonical_fields(record),
                            split=_official_split(record.get("split")) if "split" in names else split,
                        )
                        index += 1
        except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) on bad files
            yield Row(key=f"{Path(path).name}#file", audio=None, audio_path=None, fields={},
                      error=f"unreadable_file: {path}: {exc}")


def _count_parquet_rows(files: list[str]) -> int | None:
    """Rows in parquet files, from their footers (no data is read); None if a footer is unreadable."""
    import pyarrow.parquet as pq

    try:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    except Exception:  # noqa: BLE001 - a broken file is reported when it is read
        return None


def rows_from_dataset(dataset: Any, split_name: str | None) -> Iterator[Row]:
    """Rows of a (streaming) ``datasets`` dataset whose ``audio`` column is cast to ``decode=False``."""
    split = _official_split(split_name)
    for index, record in enumerate(dataset):
        audio, audio_path = _audio_from_value(record.get("audio"))
        key = Path(audio_path).name if audio_path else f"{split_name}#{index}"
        yield Row(key=key, audio=audio, audio_path=audio_path, fields=_canonical_fields(record), split=split)


def _find_column(columns: Iterable[str], candidates: Iterable[str]) -> str | None:
    lower = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand.lower() in lower:
            return lower[cand.lower()]
    return None


def _read_table(path: Path) -> list[dict[str, str]]:
    """A TSV or CSV file as a list of dicts (delimiter sniffed from the extension and header)."""
    text = path.read_text(encoding="utf-8-sig")
    first = text.split("\n", 1)[0]
    delimiter = "\t" if path.suffix.lower() == ".tsv" or "\t" in first else ","
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
