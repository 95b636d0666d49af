"""Speaker tables: parquet/TSV/CSV files that map audio file names to speaker IDs."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, Callable

from data_prep.vaani.errors import SourceUnavailable
from data_prep.vaani.rows import _ALIASES, _FILE_COLUMNS, _find_column, _read_table


def _is_speaker_table(path: Path) -> bool:
    import pyarrow.parquet as pq

    try:
        names = set(pq.ParquetFile(path).schema_arrow.names)
    except Exception:  # noqa: BLE001 - unreadable files are reported when read as data
        return False
    return "audio" not in names and _find_column(names, _ALIASES["speakerID"]) is not None


def load_speaker_map(sources: list[str], open_file: Callable[[str], Any] = open) -> dict[str, str]:
    """Audio file base name -> speaker ID from parquet/TSV/CSV speaker tables.

    Only the file-name and speaker columns are read; ``pincode`` and ``speakerImageHash`` never are.
    """
    import pyarrow.parquet as pq

    mapping: dict[str, str] = {}
    for src in sources:
        if src.lower().endswith(".parquet"):
            with open_file(src, "rb") as fh:
                pf = pq.ParquetFile(fh)
                names = pf.schema_arrow.names
                spk_col = _find_column(names, _ALIASES["speakerID"])
                if "audio" in names:
                    file_col = "audio.path"
                else:
                    file_col = _find_column(names, _FILE_COLUMNS)
                if spk_col is None or file_col is None:
                    raise SourceUnavailable(f"{src}: a speaker table needs a file-name and a speakerID column")
                for batch in pf.iter_batches(columns=[file_col, spk_col], batch_size=4096):
                    files = batch.column(0)
                    if file_col == "audio.path":
                        files = files.field("path")
                    for f, s in zip(files.to_pylist(), batch.column(1).to_pylist()):
                        if f and s is not None:
                            mapping[PurePosixPath(str(f).replace("\\", "/")).name] = str(s)
        else:
            records = _read_table(Path(src))
            if not records:
                continue
            file_col = _find_column(records[0].keys(), _FILE_COLUMNS)
            spk_col = _find_column(records[0].keys(), _ALIASES["speakerID"])
            if spk_col is None or file_col is None:
                raise SourceUnavailable(f"{src}: a speaker table needs a file-name and a speakerID column")
            for r in records:
                if r.get(file_col) and r.get(spk_col):
                    mapping[PurePosixPath(r[file_col].replace("\\", "/")).name] = r[spk_col]
    return mapping
