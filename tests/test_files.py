"""speech_calm.files.read_jsonl: the one JSONL reader behind manifests, KV rows and translation pairs."""

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
