"""benchmarks.results_table: every system on the same utterances (seen, unseen, held-out voice), CALM over
seeds as mean and range."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import results_table
from speech_calm.speech.audio import torch_threads
from tests.trained import baseline_runs


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def test_table_scores_every_system_and_reports_seeds_as_mean_and_range(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = baseline_runs(tmp_path_factory)
    data = runs["ws"] / "data"
    voice = data / "test_festival.jsonl"  # the held-out voice: here the same clips, to fill its column
    shutil.copy(data / "test.jsonl", voice)
    out = tmp_path / "table.md"
    try:
        rc = results_table.main(["--calm", str(runs["calm_s0"]), str(runs["calm_s1"]), "--prefix",
                                 str(runs["prefix"]), "--zero-shot", str(runs["zero_shot"]), "--cascade",
                                 str(runs["cascade"]), "--limit", "3", "--out", str(out)])
        assert rc == 0
        assert results_table.main(["--calm", str(runs["calm_s0"]), "--prefix", str(runs["calm_s0"]),
                                   "--limit", "1", "--out", str(tmp_path / "x.md")]) == 2  # not a projector
    finally:
        voice.unlink()
    captured = capsys.readouterr()
    assert "not a compose.bridge.type=prefix run" in captured.err
    report = json.loads(out.with_suffix(".json").read_text())
    systems = [r["system"].split(" (")[0].split(",")[0] for r in report["rows"]]
    assert systems == ["m_A alone", "anchor alone", "cascade", "cascade", "prefix projector", "CALM", "CALM"]
    assert report["utterances"] == {"test": 3, "voice": 3}
    rows = {r["system"]: r for r in report["rows"]}
    ctc, few, lora = (r["cells"] for r in report["rows"][:1] + report["rows"][2:4])
    for label in ("seen", "unseen", "held-out voice"):
        if label in ctc:  # a tiny test set may hold no seen (or unseen) sentence
            assert ctc[label]["chrf"] is None  # m_A transcribes only
            assert few[label]["cer"] == lora[label]["cer"] == ctc[label]["cer"]  # the cascade's transcript is m_A's
    assert "held-out voice" in ctc
    from benchmarks.speech_table import ctc_alone
    from speech_calm.speech.data import read_manifest
    from speech_calm.speech.evaluate import scores

    alone = ctc_alone(str(runs["ws"] / "run" / "encoder" / "model"), list(read_manifest(data / "test.jsonl"))[:3])
    assert ctc["held-out voice"]["cer"] == pytest.approx(scores(alone, "telugu")["cer"])  # m_A's own transcripts
    calm = report["rows"][-1]
    assert calm["system"] == "CALM (mean, range over 2 seeds)" and len(calm["seeds"]) == 2
    for label, metrics in calm["cells"].items():
        for key, v in metrics.items():
            values = [s["cells"][label][key] for s in calm["seeds"]]
            assert v["mean"] == pytest.approx(sum(values) / 2) and (v["min"], v["max"]) == (min(values), max(values))
    assert rows["cascade, LoRA (matched parameters)"]["trained_parameters"] == \
        json.loads((runs["cascade"] / "cascade" / "params.json").read_text())["trainable"]
    table = out.read_text()
    assert table in captured.out and "held-out voice chrF++" in table.splitlines()[0]
    last = table.splitlines()[-1]
    assert last.startswith("| CALM (mean, range over 2 seeds) |") and "–" in last


def test_seeds_are_summarised_by_mean_and_range() -> None:
    seeds = [{"seen": {"cer": 10.0, "chrf": 30.0}}, {"seen": {"cer": 14.0, "chrf": None}},
             {"seen": {"cer": 12.0, "chrf": 36.0}}]
    got = results_table.summary(seeds)
    assert got["seen"]["cer"] == {"mean": 12.0, "min": 10.0, "max": 14.0, "runs": 3}
    assert got["seen"]["chrf"] == {"mean": 33.0, "min": 30.0, "max": 36.0, "runs": 2}  # a missing score is left out
    table = results_table.markdown([{"system": "CALM", "trained_parameters": 2_500_000, "cells": got}])
    assert table.splitlines()[-1] == "| CALM | 2.50 M | 12.0 (10.0–14.0) | 33.0 (30.0–36.0) |"
