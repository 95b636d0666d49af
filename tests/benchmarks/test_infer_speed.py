"""benchmarks/infer_speed.py runs end to end on a tiny trained run and puts the three searches side by side."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import infer_speed
from tests.trained import trained_run


def test_infer_speed_prints_every_search_and_batch(tmp_path_factory: pytest.TempPathFactory,
                                                   capsys: pytest.CaptureFixture) -> None:
    ws: Path = trained_run(tmp_path_factory)
    rc = infer_speed.main([str(ws / "run"), "--manifest", str(ws / "data" / "test.jsonl"), "--files", "3",
                           "--repeats", "1", "--batch-sizes", "1", "2", "--ctc-weight", "0.5"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    lines = lines[[i for i, line in enumerate(lines) if line.startswith("search")][-1] + 2:]  # the table's rows
    rows = {(line[:12].strip(), line[12:].split()[0]) for line in lines}
    assert rows == {(s, b) for s in ("plain", "drafted", "joint 0.5") for b in ("1", "2")}
    drafted = [line for line in lines if line.startswith("drafted")]
    assert all(line.rstrip().endswith("3/3") for line in drafted)  # drafted writes what plain writes
