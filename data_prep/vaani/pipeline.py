"""``prepare``: read a source, screen its rows in order, decode the survivors in a worker pool,
split by speaker, and write manifests, stats.json and ATTRIBUTION.md."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

# The Hub and the decoder are reached through their modules (hub.X, audio_jobs.X), so that replacing
# a function where it is defined (as the tests do) takes effect here.
from data_prep.vaani import audio_jobs, hub
from data_prep.vaani.attribution import _attribution, _festival_note
from data_prep.vaani.errors import SourceUnavailable
from data_prep.vaani.local import (
    _read_synthetic_marker,
    discover_local,
    iter_table_rows,
)
from data_prep.vaani.outputs import (
    MANIFEST_KEYS,
    _make_records,
    _remove_orphans,
    _stats,
    _write_text,
)
from data_prep.vaani.rows import (
    Row,
    _count_parquet_rows,
    _official_split,
    _split_from_path,
    iter_parquet_rows,
)
from data_prep.vaani.screening import _Candidate, _finish, _screen, _State
from data_prep.vaani.speakers import load_speaker_map
from data_prep.vaani.splits import SPLITS, assign_splits
from speech_calm.speech.audio import limit_torch_threads, torch_threads
from speech_calm.speech.indic import LANGUAGE_CODES


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
    trim_margin: float | None = audio_jobs.TRIM_MARGIN_S,
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
        token = hub._hf_token()
        hub.check_hf_access(hub.HF_REPO, token)  # before anything is written
        configs = config or [lang.capitalize() for lang in languages]
        rows = _chain(hub.iter_hf_rows(hub.HF_REPO, c, wanted_splits, token) for c in configs)
        kind = "vaani"
        attribution = _attribution("vaani", repo=hub.HF_REPO, configs=f" (configs: {', '.join(configs)})")
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
            kind, repo=hub.HF_REPO, configs="", path=Path(path).resolve(), seed=(synthetic_info or {}).get("seed", "?"),
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

        speaker_sources = hub._hf_speaker_files(seen, token)
        speaker_opener = HfFileSystem(token=token).open
    if speaker_sources:
        speaker_map = load_speaker_map(speaker_sources, speaker_opener)
    for r in records:
        if r["speaker"] is None and r["_file"]:
            r["speaker"] = speaker_map.get(r["_file"])
    split_of = assign_splits(records, seed)

    # The three splits always exist (an empty manifest says "none"); extra test sets only when present.
    by_split: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for r in records:
        by_split.setdefault(split_of[r["id"]], []).append(r)
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
    worklog = audio_jobs._WorkLog(out / "_work" / "audio_jobs.jsonl")
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
                    _finish(cand, audio_jobs._decode_job(job), worklog, state, candidates)
                else:
                    state.decoded += 1
                    pending[executor.submit(audio_jobs._decode_job, job)] = cand
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
