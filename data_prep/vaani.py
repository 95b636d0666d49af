"""Vaani speech data -> speaker-disjoint manifests of 16 kHz mono FLAC.

Usage (see ``--help``)::

    python data_prep/vaani.py --source synthetic --out data/vaani/telugu            # offline demo corpus
    python data_prep/vaani.py --source hf --language telugu --out data/vaani/telugu  # needs HF_TOKEN
    python data_prep/vaani.py --source local /data/vaani_mirror --out data/vaani/telugu

Sources, all ending in the same processing:

* ``hf``: ``ARTPARK-IISc/Vaani-transcription-part`` streamed from the Hugging Face Hub (one config per
  language, e.g. ``Telugu``; official splits kept).  If the config does not load (config names changed
  between releases), its parquet files are listed and read directly.  ``--speakers`` joins speaker IDs
  from the main ``ARTPARK-IISc/Vaani`` repo by audio file name.
* ``local PATH``: a mirror of Vaani parquet files, or a folder of audio files with a transcript
  TSV/CSV.  Speaker tables found in the mirror (parquet with ``speakerID`` but no audio) are joined.
* ``synthetic``: a Vaani-shaped corpus made offline by TTS (``data_prep/synthetic.py``), written as
  Vaani-format parquet under ``OUT/_vaani_mirror`` and then processed as ``local``.

Processing per row: language filter, transcript normalisation and script check, path sanitising,
duplicate removal, duration filter, decode + downmix + resample to 16 kHz, leading/trailing silence
trimmed (``--trim-silence``), FLAC.  Rows that fail are
counted by reason in ``stats.json``.  Decoding runs in ``--num-workers`` processes.  A work log under
``OUT/_work`` makes reruns resume without redoing finished audio; every output file is written to a
temporary name and renamed, and manifests are sorted so reruns are byte-identical.

Outputs: ``OUT/{train,dev,test}.jsonl``, ``OUT/audio/<id>.flac``, ``OUT/stats.json``,
``OUT/ATTRIBUTION.md``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
import multiprocessing
import os
import random
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator

if __package__ in (None, ""):  # run as `python data_prep/vaani.py`: make `data_prep` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import soundfile as sf

from speech_calm.audio import (
    SAMPLE_RATE,
    AudioError,
    atomic_write,
    limit_torch_threads,
    load_audio,
    rms,
    torch_threads,
    write_flac,
)
from speech_calm.segment import SegmentOptions, find_segments
from speech_calm.text import LANGUAGE_CODES, code_switched, language_code, normalize, script_fraction

__all__ = [
    "HF_REPO",
    "HF_MAIN_REPO",
    "MANIFEST_KEYS",
    "DROP_REASONS",
    "Row",
    "SourceUnavailable",
    "prepare",
    "assign_splits",
    "iter_parquet_rows",
    "iter_table_rows",
    "iter_hf_rows",
    "rows_from_dataset",
    "check_hf_access",
    "main",
]

log = logging.getLogger("data_prep.vaani")

HF_REPO = "ARTPARK-IISc/Vaani-transcription-part"
HF_MAIN_REPO = "ARTPARK-IISc/Vaani"
HF_TIMEOUT_S = 20.0
TRIM_MARGIN_S = 0.1  # silence kept before the first and after the last speech in a clip
SPLITS = ("train", "dev", "test")
SPLIT_FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}
MANIFEST_KEYS = (
    "id", "audio", "duration", "text", "text_raw", "text_code_switched", "translation",
    "speaker", "gender", "language", "state", "district", "source",
)
DROP_REASONS = (
    "wrong_language", "empty_transcript", "wrong_script", "unsafe_path", "missing_audio",
    "unreadable_audio", "empty_audio", "silent_audio", "too_short", "too_long", "duplicate",
    "unreadable_file",
)
# A transcript is kept when at least this share of its letters is in the language's script
# (braced English glosses are removed before the check, so code-switching does not count against it).
MIN_SCRIPT_FRACTION = 0.8
# Columns never copied anywhere: personal data in the main Vaani dataset.
PRIVATE_COLUMNS = frozenset({"pincode", "speakerImageHash"})
_OFFICIAL_SPLITS = {"train": "train", "validation": "dev", "valid": "dev", "dev": "dev", "test": "test"}
_SPLIT_FILE_RE = re.compile(r"^(train|validation|valid|dev|test)(?=[-_.])", re.IGNORECASE)
_SAFE_ID_RE = re.compile(r"[^A-Za-z0-9_-]+")
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


class SourceUnavailable(RuntimeError):
    """The requested source cannot be read (no access, no network, nothing at PATH)."""


# ------------------------------------------------------------------------------------------- rows


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


def _official_split(value: str | None) -> str | None:
    if value is None:
        return None
    return _OFFICIAL_SPLITS.get(str(value).strip().lower())


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


def rows_from_dataset(dataset: Any, split_name: str | None) -> Iterator[Row]:
    """Rows of a (streaming) ``datasets`` dataset whose ``audio`` column is cast to ``decode=False``."""
    split = _official_split(split_name)
    for index, record in enumerate(dataset):
        audio, audio_path = _audio_from_value(record.get("audio"))
        key = Path(audio_path).name if audio_path else f"{split_name}#{index}"
        yield Row(key=key, audio=audio, audio_path=audio_path, fields=_canonical_fields(record), split=split)


# ------------------------------------------------------------------------------------ Hugging Face


def _hf_token() -> str | None:
    """HF token from HF_TOKEN or the local HF cache (``huggingface-cli login``); never printed."""
    from huggingface_hub import get_token

    return get_token()


def _with_timeout(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Run ``fn`` in a daemon thread so that a black-holed network cannot hang the command."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise SourceUnavailable(f"{what} did not answer within {timeout:.0f} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


_HF_HELP = (
    "To use --source hf: accept the dataset's terms at https://huggingface.co/datasets/{repo} while "
    "logged in, then create a read token at https://huggingface.co/settings/tokens and set HF_TOKEN "
    "(or run `huggingface-cli login`).  Without access, use --source local PATH (a Vaani parquet "
    "mirror, or audio files with a transcript TSV/CSV) or --source synthetic (offline)."
)


def check_hf_access(repo: str = HF_REPO, token: str | None = None, timeout: float = HF_TIMEOUT_S) -> None:
    """Raise :class:`SourceUnavailable` with a clear message unless ``repo`` can be read now."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise SourceUnavailable("HF_HUB_OFFLINE is set, so the Hub cannot be reached.\n" + _HF_HELP.format(repo=repo))
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        _with_timeout(lambda: HfApi().auth_check(repo, repo_type="dataset", token=token), timeout,
                      "the Hugging Face Hub")
    except GatedRepoError:
        raise SourceUnavailable(
            f"{repo} is gated and this account has not been granted access."
            + ("" if token else " No HF token was found.") + "\n" + _HF_HELP.format(repo=repo)
        ) from None
    except RepositoryNotFoundError:
        raise SourceUnavailable(
            f"{repo} was not found or needs a token (" + ("token rejected" if token else "no HF token found")
            + ").\n" + _HF_HELP.format(repo=repo)
        ) from None
    except SourceUnavailable as exc:
        raise SourceUnavailable(f"Cannot reach the Hugging Face Hub: {exc}.\n" + _HF_HELP.format(repo=repo)) from None
    except Exception as exc:  # noqa: BLE001 - network errors differ between hub versions (requests/httpx)
        raise SourceUnavailable(
            f"Cannot reach the Hugging Face Hub ({type(exc).__name__}: {exc}).\n" + _HF_HELP.format(repo=repo)
        ) from None


def _hf_parquet_files(repo: str, config: str, token: str | None) -> list[str]:
    """Parquet files of ``config`` in ``repo``, found by listing (for configs that fail to load)."""
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem(token=token)
    files = _with_timeout(lambda: fs.glob(f"datasets/{repo}/**/*.parquet"), 120, "listing the repo")
    want = config.strip("/").lower().split("/")
    picked = []
    for f in files:
        parts = [p.lower() for p in PurePosixPath(f).parts[3:-1]]  # skip datasets/owner/name
        # the config's path components appear in order among the file's folders (Telugu, audio/Telugu,
        # AndhraPradesh/Anantpur ...)
        if any(parts[i:i + len(want)] == want for i in range(len(parts))):
            picked.append(f)
    return sorted(picked)


def iter_hf_rows(repo: str, config: str, splits: list[str] | None, token: str | None) -> Iterator[Row]:
    """Stream rows of one config of a Hub dataset, keeping its official splits.

    Uses ``datasets.load_dataset(..., streaming=True)`` with undecoded audio (soundfile decodes it
    later, so FFmpeg/torchcodec are not needed).  When the config cannot be loaded, falls back to
    listing the repo's parquet files for that config and reading them with pyarrow over HfFileSystem.
    """
    try:
        import datasets

        loaded = _with_timeout(
            lambda: datasets.load_dataset(repo, config, streaming=True, token=token), 300, "loading the config"
        )
        for split_name, ds in loaded.items():
            if splits and _official_split(split_name) not in splits:
                continue
            ds = ds.cast_column("audio", datasets.Audio(decode=False))
            yield from rows_from_dataset(ds, split_name)
        return
    except SourceUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - the builder fails in many ways when configs change
        log.warning("loading config %r of %s failed (%s); listing its parquet files instead", config, repo, exc)
    from huggingface_hub import HfFileSystem

    files = _hf_parquet_files(repo, config, token)
    if not files:
        raise SourceUnavailable(f"{repo} has no parquet files for config {config!r}; check --config")
    if splits:
        files = [f for f in files if _split_from_path(f) in splits]
    fs = HfFileSystem(token=token)
    yield from iter_parquet_rows(files, open_file=fs.open)


def _hf_speaker_files(districts: set[tuple[str, str]], token: str | None) -> list[str]:
    """Parquet files of the main Vaani repo for the (state, district) pairs seen in the data."""
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem(token=token)
    files = _with_timeout(lambda: fs.glob(f"datasets/{HF_MAIN_REPO}/audio/*/*/*.parquet"), 300, "listing Vaani")

    def squash(s: str) -> str:
        return re.sub(r"[^a-z0-9]", "", s.lower())

    wanted = {(squash(s), squash(d)) for s, d in districts}
    parts = {f: PurePosixPath(f).parts for f in files}
    return sorted(f for f, p in parts.items() if (squash(p[-3]), squash(p[-2])) in wanted)


# ----------------------------------------------------------------------------------- speaker tables


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


# ----------------------------------------------------------------------------------- local sources


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


# ------------------------------------------------------------------------------- audio work (pool)


@dataclass(frozen=True)
class _Job:
    id: str
    audio: bytes
    name: str
    out_path: str
    trim: float | None = None  # keep this much (s) around the speech; None keeps the clip whole


def _decode_job(job: _Job) -> dict[str, Any]:
    """Decode, downmix, resample and write one clip.  Runs in a worker process.

    Returns a result dict for the work log: ``{"ok": True, "samples": n}`` or ``{"ok": False,
    "reason": ..., "error": ...}``.  Writing is atomic, so a killed worker leaves no partial FLAC.
    """
    try:
        samples = load_audio(job.audio, SAMPLE_RATE, name=job.name)
    except AudioError as exc:
        return {"ok": False, "reason": "unreadable_audio", "error": str(exc)}
    if rms(samples) < 1e-5:
        return {"ok": False, "reason": "silent_audio", "error": f"{job.name}: audio is silent", "trim": job.trim}
    if job.trim is not None:
        samples = trim_silence(samples, job.trim, job.name)
    write_flac(job.out_path, samples, SAMPLE_RATE)
    return {"ok": True, "samples": int(samples.shape[0]), "trim": job.trim}


def trim_silence(samples: np.ndarray, margin: float, name: str = "audio") -> np.ndarray:
    """Mono 16 kHz `samples` (N,) cut to the span from the first to the last speech, plus `margin` seconds.

    Why: Vaani clips (and ours) carry up to a second of leading/trailing room noise.  CTC must learn to
    emit blanks over it before it can align characters, and on our corpus that halved the encoder's
    learning speed (dev CER 69% vs 34% after 300 steps, same data untrimmed vs trimmed).  Inference cuts
    audio at pauses with the same detector (speech_calm.segment), so training and inference match.
    """
    try:
        segments = find_segments(samples, SAMPLE_RATE, SegmentOptions(pad=margin, max_segment=3600.0), name)
    except AudioError:
        return samples  # nothing stands out as speech: keep the clip as it is
    return samples[segments[0].start: segments[-1].end]


# ----------------------------------------------------------------------------------- bookkeeping


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


class _WorkLog:
    """Append-only JSONL of finished audio jobs, so an interrupted run resumes where it stopped.

    An entry is reused only when the input audio is the same (same SHA-1) and its FLAC exists; a
    half-written last line (the crash case) is ignored.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.entries[entry["id"]] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")

    def get(self, job_id: str, sha1: str, audio_file: Path) -> dict[str, Any] | None:
        entry = self.entries.get(job_id)
        if entry is None or entry.get("sha1") != sha1:
            return None
        if entry.get("ok") and not audio_file.is_file():
            return None
        return entry

    def add(self, job_id: str, sha1: str, result: dict[str, Any]) -> None:
        entry = {"id": job_id, "sha1": sha1, **result}
        self.entries[job_id] = entry
        self._fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


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


# --------------------------------------------------------------------------------------- splits


def assign_splits(records: list[dict[str, Any]], seed: int) -> dict[str, str]:
    """id -> split.  Official splits are kept; the rest is split by speaker, ~80/10/10 by duration.

    Works per language.  Speakers are shuffled with ``seed``; the first goes to test, the second to
    dev (so neither is empty when there are 3+ speakers), then each speaker goes to the split that is
    furthest below its share of the language's duration.  A speaker with an official split keeps all
    its utterances there.  Records without a speaker are split per utterance.
    """
    out: dict[str, str] = {}
    by_lang: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_lang[r["language"]].append(r)
    for language, recs in sorted(by_lang.items()):
        speaker_split: dict[str, str] = {}
        for r in recs:
            if r["_split"] and r["speaker"] is not None:
                speaker_split.setdefault(r["speaker"], r["_split"])
        groups: dict[str, float] = defaultdict(float)
        for r in recs:
            if r["_split"]:
                out[r["id"]] = r["_split"]
            elif r["speaker"] is not None and r["speaker"] in speaker_split:
                out[r["id"]] = speaker_split[r["speaker"]]
            else:
                groups[_group_key(r)] += r["duration"]
        if not groups:
            continue
        order = sorted(groups)
        random.Random(f"split/{seed}/{language}").shuffle(order)
        total = sum(groups.values())
        have = {s: 0.0 for s in SPLITS}
        group_split: dict[str, str] = {}
        for i, g in enumerate(order):
            if len(order) >= 3 and i < 2:
                split = ("test", "dev")[i]
            else:
                split = max(SPLITS, key=lambda s: (SPLIT_FRACTIONS[s] * total - have[s], -SPLITS.index(s)))
            group_split[g] = split
            have[split] += groups[g]
        for r in recs:
            if r["id"] not in out:
                out[r["id"]] = group_split[_group_key(r)]
    return out


def _group_key(record: dict[str, Any]) -> str:
    return f"spk:{record['speaker']}" if record["speaker"] is not None else f"utt:{record['id']}"


# ---------------------------------------------------------------------------------------- outputs


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _split_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    def summary(rs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "hours": round(sum(r["duration"] for r in rs) / 3600.0, 4),
            "utterances": len(rs),
            "speakers": len({r["speaker"] for r in rs if r["speaker"] is not None}),
        }

    out = summary(records)
    langs = sorted({r["language"] for r in records})
    out["per_language"] = {lang: summary([r for r in records if r["language"] == lang]) for lang in langs}
    return out


_ATTRIBUTION = {
    "vaani": """# Attribution

This corpus was derived from **Vaani** by the Indian Institute of Science (IISc) Bangalore and
ARTPARK, funded by Google: the Hugging Face dataset `{repo}`{configs}.

- Licence: Creative Commons Attribution 4.0 International (CC BY 4.0),
  https://creativecommons.org/licenses/by/4.0/
- Project: https://vaani.iisc.ac.in/ — dataset: https://huggingface.co/datasets/{repo}
- Changes made here: rows filtered by language, script, duration and duplicates; transcripts
  normalised; audio downmixed, resampled to 16 kHz, leading/trailing silence trimmed and stored as FLAC; speaker-disjoint splits where
  the source has no official split. Personal fields (pincode, speaker image hash) were not copied.

Keep this notice with any copy or derivative of this corpus.
""",
    "synthetic": """# Attribution

This is a **synthetic** Vaani-shaped corpus, not Vaani data and not human speech. It was generated
offline by `data_prep/synthetic.py` (seed {seed}) for demos and tests:

- speech synthesised with eSpeak NG (GPL-3.0-or-later, via the `espeakng-loader` wheel){festival};
- sentences from templates over a lexicon using Unicode CLDR data via `babel` (Unicode licence) and
  numbers from `num2words` (LGPL-2.1), plus hand-written everyday words and phrases;
- Vaani's column layout and transcript conventions (CC BY 4.0 dataset by IISc/ARTPARK) were imitated,
  none of its content was used.

Do not report results on this corpus as results on Vaani.
""",
    "local": """# Attribution

This corpus was prepared from local files at `{path}` (audio with a transcript table). Their licence
and attribution are those of their source; copy the source's notice here when redistributing.
""",
}


def _attribution(kind: str, **kw: Any) -> str:
    return _ATTRIBUTION[kind].format(**kw)


# -------------------------------------------------------------------------------------- pipeline


def prepare(
    source: str,
    out: str | os.PathLike,
    languages: Iterable[str] = ("telugu",),
    path: str | os.PathLike | None = None,
    *,
    hours: float | None = None,
    seed: int = 0,
    num_workers: int | None = None,
    min_duration: float = 0.5,
    max_duration: float = 30.0,
    config: list[str] | None = None,
    speakers: str | None = None,
    splits: list[str] | None = None,
    progress: bool = True,
    tts: str = "auto",
    trim_margin: float | None = TRIM_MARGIN_S,
) -> dict[str, Any]:
    """Build manifests in ``out`` from ``source`` (``hf``, ``local`` or ``synthetic``); return the stats.

    ``hours`` caps kept audio per language (for ``synthetic`` it sizes the corpus; default 1 h there,
    no cap elsewhere).  ``speakers``: for ``hf``, any value joins speaker IDs from the main Vaani repo;
    for ``local``, a path to a speaker table (parquet/TSV/CSV with file name and speakerID).
    ``splits`` restricts official splits read (``train``, ``validation``/``dev``, ``test``).
    ``trim_margin``: leading/trailing silence is cut to this many seconds (None keeps clips whole).
    Raises :class:`SourceUnavailable` (before writing anything) when the source cannot be read.
    """
    started = time.monotonic()
    languages = _check_languages(languages)
    if not 0 <= min_duration < max_duration:
        raise ValueError(f"need 0 <= --min-duration < --max-duration, got {min_duration} and {max_duration}")
    if hours is not None and hours <= 0:
        raise ValueError(f"--hours must be positive, got {hours}")
    if trim_margin is not None and trim_margin < 0:
        raise ValueError(f"--trim-silence must be >= 0 seconds, got {trim_margin}")
    wanted_splits = sorted({_official_split(s) or "?" for s in splits}) if splits else None
    if wanted_splits and "?" in wanted_splits:
        raise ValueError(f"--split takes train, validation (or dev) and test; got {splits}")
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1)
    out = Path(out)
    synthetic_info: dict[str, Any] | None = None
    speaker_sources: list[str] = []
    speaker_opener: Callable[[str], Any] = open
    token = None
    total_rows: int | None = None  # for the progress bar; unknown when streaming

    if source == "hf":
        token = _hf_token()
        check_hf_access(HF_REPO, token)  # before anything is written
        configs = config or [lang.capitalize() for lang in languages]
        rows = _chain(iter_hf_rows(HF_REPO, c, wanted_splits, token) for c in configs)
        kind, attribution = "vaani", _attribution("vaani", repo=HF_REPO, configs=f" (configs: {', '.join(configs)})")
        source_label = "vaani"
    elif source == "local":
        if path is None:
            raise SourceUnavailable(
                "--source local needs PATH: a Vaani parquet mirror or a folder with a transcript TSV/CSV")
        fmt, files, speaker_sources = discover_local(Path(path))
        if speakers and speakers != "hub":  # bare --speakers: the mirror's own tables (joined anyway)
            speaker_sources = speaker_sources + [str(speakers)]
        if fmt == "parquet":
            if wanted_splits:
                files = [f for f in files if _split_from_path(f) in wanted_splits or _split_from_path(f) is None]
            rows = iter_parquet_rows(files)
            total_rows = _count_parquet_rows(files)
            synthetic_info = _read_synthetic_marker(Path(path))
            kind = source_label = "vaani" if synthetic_info is None else "synthetic"
        else:
            rows = iter_table_rows(Path(files[0]), languages[0] if len(languages) == 1 else None)
            kind, source_label = "local", "local"
        attribution = _attribution(
            kind, repo=HF_REPO, configs="", path=Path(path).resolve(), seed=(synthetic_info or {}).get("seed", "?"),
            festival=_festival_note(synthetic_info),
        )
    elif source == "synthetic":
        from data_prep.synthetic import build_mirror

        mirror = out / "_vaani_mirror"
        synthetic_info = build_mirror(mirror, languages, hours=1.0 if hours is None else hours, seed=seed,
                                      num_workers=num_workers, tts=tts, progress=progress)
        stats = prepare("local", out, languages, mirror, seed=seed, num_workers=num_workers,
                        min_duration=min_duration, max_duration=max_duration, progress=progress,
                        trim_margin=trim_margin)
        stats["elapsed_s_with_synthesis"] = round(time.monotonic() - started, 1)
        return stats
    else:
        raise ValueError(f"unknown source {source!r}; use hf, local or synthetic")

    out.mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(exist_ok=True)
    state = _State()
    candidates: dict[str, _Candidate] = {}
    _process_rows(rows, languages, out, state, candidates, num_workers=num_workers, hours=hours,
                  min_duration=min_duration, max_duration=max_duration, progress=progress, total=total_rows,
                  trim=trim_margin)

    records = _make_records(candidates, source_label, min_duration, max_duration, state)
    speaker_map: dict[str, str] = {}
    if source == "hf" and speakers:
        seen = {(c.fields.get("state") or "", c.fields.get("district") or "") for c in candidates.values()}
        from huggingface_hub import HfFileSystem

        speaker_sources = _hf_speaker_files(seen, token)
        speaker_opener = HfFileSystem(token=token).open
    if speaker_sources:
        speaker_map = load_speaker_map(speaker_sources, speaker_opener)
    for r in records:
        if r["speaker"] is None and r["_file"]:
            r["speaker"] = speaker_map.get(r["_file"])
    split_of = assign_splits(records, seed)

    by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for r in records:
        by_split[split_of[r["id"]]].append(r)
    for split, recs in by_split.items():
        recs.sort(key=lambda r: r["id"])
        lines = "".join(json.dumps({k: r[k] for k in MANIFEST_KEYS}, ensure_ascii=False) + "\n" for r in recs)
        _write_text(out / f"{split}.jsonl", lines)

    stats = _stats(records, by_split, split_of, state, source_label, languages, seed, min_duration,
                   max_duration, hours, trim_margin)
    if synthetic_info is not None:
        stats["synthetic"] = synthetic_info
    _write_text(out / "stats.json", json.dumps(stats, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    _write_text(out / "ATTRIBUTION.md", attribution)
    _remove_orphans(out / "audio", {r["id"] for r in records})
    elapsed = time.monotonic() - started
    # Run facts that differ between reruns stay out of stats.json (it must be byte-identical).
    stats["run"] = {"elapsed_s": round(elapsed, 1), "decoded": state.decoded, "reused": state.reused,
                    "errors_sample": state.errors[:10]}
    return stats


def _process_rows(
    rows: Iterable[Row], languages: list[str], out: Path, state: _State, candidates: dict[str, _Candidate],
    *, num_workers: int, hours: float | None, min_duration: float, max_duration: float, progress: bool,
    total: int | None = None, trim: float | None = None,
) -> None:
    """Screen rows in source order and decode the survivors in ``num_workers`` processes.

    Fills ``candidates`` (id -> candidate with its decoded length) and the drop counts in ``state``.
    Finished jobs go to the work log at once, so a crash loses at most the clips in flight.
    """
    worklog = _WorkLog(out / "_work" / "audio_jobs.jsonl")
    seen_sha1: set[str] = set()
    kept_seconds: Counter = Counter()
    pending: dict[Future, _Candidate] = {}
    bar = _progress(progress, desc="rows", unit="row", total=total)
    # spawn, not fork: the parent may hold torch/OpenMP threads, which a forked child inherits broken.
    executor = (
        ProcessPoolExecutor(max_workers=num_workers, initializer=limit_torch_threads,
                            mp_context=multiprocessing.get_context("spawn"))
        if num_workers > 1 else None
    )

    def collect() -> None:
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for fut in done:
            _finish(pending.pop(fut), fut.result(), worklog, state, candidates)

    # Inline work (one worker) runs single-threaded too; the caller's thread count comes back after.
    with torch_threads(1):
        try:
            for row in rows:
                state.rows_seen += 1
                bar.update(1)
                cand, job = _screen(row, languages, out, state, seen_sha1, candidates, min_duration,
                                    max_duration, hours, kept_seconds, trim)
                if cand is None:
                    continue
                cached = worklog.get(cand.id, cand.sha1, out / "audio" / f"{cand.id}.flac")
                if cached is not None and cached.get("trim") != trim:
                    cached = None  # made with another --trim-silence: redo
                if cached is not None:
                    state.reused += 1
                    _finish(cand, cached, None, state, candidates)
                elif executor is None:
                    state.decoded += 1
                    _finish(cand, _decode_job(job), worklog, state, candidates)
                else:
                    state.decoded += 1
                    pending[executor.submit(_decode_job, job)] = cand
                    # Bound the audio held in memory: a streamed source is never read far ahead.
                    while len(pending) >= 4 * num_workers:
                        collect()
                if hours is not None and all(kept_seconds[lang] >= hours * 3600 for lang in languages):
                    break  # every language has its hours: stop reading (matters when streaming)
            while pending:
                collect()
        finally:
            bar.close()
            worklog.close()
            if executor is not None:
                executor.shutdown(wait=True, cancel_futures=True)


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
        "total": _split_stats(records),
        "dropped": {reason: state.dropped[reason] for reason in sorted(state.dropped)},
        "dropped_total": sum(state.dropped.values()),
        "rows_seen": state.rows_seen,
        "not_used_over_hours_cap": sum(state.over_cap.values()),
        "split_method": _split_methods(records),
        "speakers_in_several_splits": sum(1 for v in speaker_splits.values() if len(v) > 1),
        "utterances_without_speaker": sum(1 for r in records if r["speaker"] is None),
    }


def _chain(iterables: Iterable[Iterable[Row]]) -> Iterator[Row]:
    for it in iterables:
        yield from it


def _check_languages(languages: Iterable[str]) -> list[str]:
    langs = [lang.strip().lower() for lang in ([languages] if isinstance(languages, str) else languages)]
    if not langs:
        raise ValueError("--language needs at least one language")
    for lang in langs:
        if lang not in LANGUAGE_CODES:
            raise ValueError(f"unknown language {lang!r}; known: {', '.join(sorted(LANGUAGE_CODES))}")
    return list(dict.fromkeys(langs))


def _progress(enabled: bool, **kw: Any):
    from tqdm import tqdm

    return tqdm(disable=not enabled, file=sys.stderr, dynamic_ncols=True, mininterval=0.5, **kw)


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


def _split_methods(records: list[dict[str, Any]]) -> dict[str, str]:
    methods: dict[str, set[str]] = defaultdict(set)
    for r in records:
        methods[r["language"]].add("official" if r["_split"] else "speaker")
    return {lang: "+".join(sorted(m)) for lang, m in sorted(methods.items())}


def _remove_orphans(audio_dir: Path, keep_ids: set[str]) -> None:
    """Delete FLACs no manifest references (from earlier runs with other settings) and temp files."""
    for p in audio_dir.iterdir():
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            p.unlink(missing_ok=True)
        elif p.suffix == ".flac" and p.stem not in keep_ids:
            p.unlink(missing_ok=True)


def _read_synthetic_marker(path: Path) -> dict[str, Any] | None:
    """The description data_prep/synthetic.py leaves in a mirror it wrote (None for real data)."""
    marker = (path if path.is_dir() else path.parent) / "SYNTHETIC.json"
    if marker.is_file():
        return json.loads(marker.read_text(encoding="utf-8"))
    return None


def _festival_note(info: dict[str, Any] | None) -> str:
    if info and info.get("engines", {}).get("festival"):
        return (",\n  and for some Telugu speakers Festival with the festvox-te-nsk diphone voice (free licence,"
                "\n  Debian packages festival, festvox-te-nsk)")
    return ""


# ------------------------------------------------------------------------------------------- CLI


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python data_prep/vaani.py",
        description="Prepare Vaani(-style) speech as 16 kHz FLAC + speaker-disjoint JSONL manifests.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  python data_prep/vaani.py --source synthetic --out data/vaani/telugu\n"
            "  python data_prep/vaani.py --source synthetic --language telugu hindi kannada tamil \\\n"
            "      --hours 0.25 --out data/vaani/multi\n"
            "  HF_TOKEN=... python data_prep/vaani.py --source hf --language telugu --out data/vaani/telugu --speakers\n"
            "  python data_prep/vaani.py --source local /data/vaani_mirror --out data/vaani/telugu\n"
        ),
    )
    p.add_argument("--source", required=True, choices=("hf", "local", "synthetic"),
                   help="hf: stream from the Hugging Face Hub (gated; needs HF_TOKEN); local: PATH; "
                        "synthetic: generate an offline Vaani-shaped corpus")
    p.add_argument("path", nargs="?",
                   help="for --source local: a Vaani parquet mirror, or a folder/TSV/CSV of audio + transcripts")
    p.add_argument("--language", nargs="+", default=["telugu"], metavar="LANG",
                   help="languages to keep (default: telugu); synthetic supports telugu hindi kannada tamil")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--hours", type=float, default=None,
                   help="hours of kept audio per language (synthetic: corpus size, default 1; others: a cap)")
    p.add_argument("--seed", type=int, default=0, help="seed for synthesis and the speaker split (default 0)")
    p.add_argument("--num-workers", type=int, default=None, help="decoding processes (default: min(4, CPUs))")
    p.add_argument("--min-duration", type=float, default=0.5, help="drop clips shorter than this (s)")
    p.add_argument("--max-duration", type=float, default=30.0, help="drop clips longer than this (s)")
    p.add_argument("--config", nargs="+", default=None,
                   help="hf: dataset config name(s) (default: the capitalised language, e.g. Telugu)")
    p.add_argument("--speakers", nargs="?", const="hub", default=None, metavar="TABLE",
                   help="join speaker IDs: hf: from the main Vaani repo; local: from TABLE (parquet/TSV/CSV "
                        "with file name and speakerID; tables inside a mirror are joined anyway)")
    p.add_argument("--split", nargs="+", default=None, metavar="SPLIT",
                   help="official splits to read (train validation test); default all")
    p.add_argument("--tts", choices=("auto", "espeak"), default="auto",
                   help="synthetic: auto uses festival's Telugu voice for some speakers when installed")
    p.add_argument("--trim-silence", type=float, default=TRIM_MARGIN_S, metavar="SECONDS",
                   help=f"cut leading/trailing silence to this margin (default {TRIM_MARGIN_S} s)")
    p.add_argument("--keep-silence", action="store_true", help="keep clips whole (no silence trimming)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _print_summary(stats: dict[str, Any], out: Path) -> None:
    print(f"\nWrote {out}  (source: {stats['source']}, languages: {', '.join(stats['languages'])})")
    print(f"{'split':<6} {'hours':>8} {'utts':>7} {'speakers':>8}")
    for split in SPLITS:
        s = stats["splits"][split]
        print(f"{split:<6} {s['hours']:>8.3f} {s['utterances']:>7} {s['speakers']:>8}")
    if stats["dropped"]:
        print("dropped: " + ", ".join(f"{k} {v}" for k, v in stats["dropped"].items()))
    run = stats.get("run", {})
    total_h = stats["total"]["hours"]
    elapsed = stats.get("elapsed_s_with_synthesis", run.get("elapsed_s"))
    if elapsed:
        print(f"time: {elapsed:.1f} s; {run.get('decoded', 0)} clips decoded, {run.get('reused', 0)} reused "
              f"from an earlier run; {total_h * 60 / max(elapsed, 1e-9):.2f} h of audio per minute")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    args = _build_parser().parse_args(argv)
    # `--language telugu /data/mirror` puts PATH among the languages (nargs="+" is greedy); a
    # language name never contains a path separator, so hand it back to PATH.
    stray = [lang for lang in args.language if os.sep in lang or os.path.exists(lang)]
    if stray and args.path is None and len(stray) == 1:
        args.path = stray[0]
        args.language = [lang for lang in args.language if lang != stray[0]] or ["telugu"]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.source == "local" and not args.path:
        print("error: --source local needs PATH (a Vaani parquet mirror or a folder with a transcript TSV/CSV)",
              file=sys.stderr)
        return 2
    if args.source != "local" and args.path:
        print(f"error: PATH is only used with --source local (got {args.path!r})", file=sys.stderr)
        return 2
    try:
        stats = prepare(
            args.source, args.out, args.language, args.path, hours=args.hours, seed=args.seed,
            num_workers=args.num_workers, min_duration=args.min_duration, max_duration=args.max_duration,
            config=args.config, speakers=args.speakers,
            splits=args.split, progress=not args.quiet, tts=args.tts,
            trim_margin=None if args.keep_silence else args.trim_silence,
        )
    except SourceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: rerun the same command to resume (finished audio is reused)", file=sys.stderr)
        return 130
    _print_summary(stats, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
