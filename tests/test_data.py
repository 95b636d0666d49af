"""speech_calm.data.read_jsonl: the one JSONL reader behind manifests, KV rows and translation pairs."""

from __future__ import annotations

from pathlib import Path

import pytest

from speech_calm.files import read_jsonl
from speech_calm.speech.data import read_manifest


def test_read_jsonl_parses_skips_limits_and_names_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"x": 1}\n\n{"x": 2}\n{"x": 3}\n', encoding="utf-8")
    assert read_jsonl(path, lambda r: r["x"], "a row", "make it") == [1, 2, 3]
    assert read_jsonl(path, lambda r: r["x"] if r["x"] != 2 else None, "a row", "make it") == [1, 3]
    assert read_jsonl(path, lambda r: r["x"], "a row", "make it", limit=2) == [1, 2]
    with pytest.raises(FileNotFoundError, match="nope.jsonl does not exist; make it"):
        read_jsonl(tmp_path / "nope.jsonl", lambda r: r, "a row", "make it")
    path.write_text('{"x": 1}\n{"y": 2}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"rows.jsonl:2: not a row"):
        read_jsonl(path, lambda r: r["x"], "a row", "make it")
    (tmp_path / "m.jsonl").write_text("not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"m.jsonl:1: not a valid manifest line"):
        read_manifest(tmp_path / "m.jsonl")


def test_task_batches_repeat_rows_apart_and_keep_tasks_apart() -> None:
    from collections import Counter

    from speech_calm.core.batch import bucket_batches
    from speech_calm.speech.data import task_batches

    tasks = ["transcribe", "translate"] * 30
    durations = [1.0 + (k // 2) * 0.1 for k in range(60)]  # both rows of an utterance share its duration
    # neither option: exactly the plain duration buckets
    assert task_batches(tasks, durations, 8, None, 0, 3) == bucket_batches(durations, 8, None, 0, 3)
    batches = task_batches(tasks, durations, 8, None, 0, 3, repeats={"translate": 2}, by_task=True)
    assert all(len({tasks[k] for k in b}) == 1 for b in batches)  # one task per batch
    counts = Counter(k for b in batches for k in b)
    assert all(counts[k] == (2 if tasks[k] == "translate" else 1) for k in range(60))
    assert all(len(b) == len(set(b)) for b in batches)  # a row's copies are in different batches
    assert batches == task_batches(tasks, durations, 8, None, 0, 3, repeats={"translate": 2}, by_task=True)
    assert batches != task_batches(tasks, durations, 8, None, 0, 4, repeats={"translate": 2}, by_task=True)
    kinds = [tasks[b[0]] for b in batches]
    assert kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True)  # the tasks are interleaved
