"""speech_calm.evaluate: metrics overall and per speaker, the JSON report, the table, unreadable utterances."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from speech_calm.evaluate import main, training_texts
from speech_calm.speech.audio import torch_threads
from speech_calm.speech.evaluate import scores, subset_scores, table
from speech_calm.training.loop import run
from speech_calm.training.recipe import load_recipe
from tests.trained import clips, trained_run


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (see tests/test_infer.py)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_run(tmp_path_factory)


def test_scores_of_perfect_and_wrong_outputs() -> None:
    items = [
        {"reference": "అమ్మ నీరు", "hypothesis": "అమ్మ, నీరు!", "reference_translation": "the mother drinks cold water today",
         "translation": "the mother drinks cold water today"},
        {"reference": "పాలు ఇల్లు", "hypothesis": "పాలు ఇల్లు", "reference_translation": None, "translation": "x"},
    ]
    got = scores(items, "telugu")
    assert got["cer"] == 0.0 and got["wer"] == 0.0  # hypotheses are normalised like the references
    assert got["script_fidelity"] == 100.0 and got["bleu"] == pytest.approx(100.0) and got["chrf"] == 100.0
    latin = scores([{**items[0], "hypothesis": "amma neeru"}], "telugu")
    assert latin["script_fidelity"] == 0.0 and latin["cer"] > 50


def test_evaluate_writes_a_report_and_prints_a_table(ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = clips(ws, "test") + clips(ws, "dev")
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"fLaC" + b"\x00" * 64)
    rows.append({**rows[0], "id": "broken_clip", "audio": str(broken), "speaker": "s9"})
    manifest = tmp_path / "eval.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "report.json"
    rc = main([str(ws / "run"), str(manifest), "--out", str(out), "--batch-size", "3", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 1  # one utterance could not be read
    assert "broken_clip" in captured.err and "cannot decode" in captured.err
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["utterances"] == len(rows) - 1 and [f["id"] for f in report["failed"]] == ["broken_clip"]
    assert set(report["metrics"]) == {"cer", "wer", "script_fidelity", "bleu", "chrf", "ctc_cer", "ctc_wer"}
    assert set(report["per_speaker"]) == {r["speaker"] for r in rows[:-1]}  # s3 (dev) and s4 (test)
    assert sum(s["utterances"] for s in report["per_speaker"].values()) == report["utterances"]
    assert all(set(s) >= {"cer", "wer", "bleu", "chrf", "minutes"} for s in report["per_speaker"].values())
    item = report["items"][0]
    assert set(item) >= {"id", "speaker", "reference", "hypothesis", "reference_translation", "translation"}
    assert table(report) in captured.out
    header, _, first, seen, unseen, *speakers = table(report).splitlines()
    assert header.split()[:3] == ["speaker", "utts", "min"] and first.split()[0] == "all" and len(speakers) == 2
    assert seen.startswith("(seen sentences)") and unseen.startswith("(unseen sentences)")


def test_default_report_path_and_transcribe_only(ws: Path, capsys: pytest.CaptureFixture) -> None:
    manifest = ws / "data" / "test.jsonl"
    assert main([str(ws / "run"), str(manifest), "--tasks", "transcribe", "--limit", "2", "--quiet"]) == 0
    report = json.loads((ws / "run" / "eval" / "test.json").read_text(encoding="utf-8"))
    assert report["tasks"] == ["transcribe"] and report["utterances"] == 2
    assert set(report["metrics"]) == {"cer", "wer", "script_fidelity", "ctc_cer", "ctc_wer"}
    assert "report: " in capsys.readouterr().out


def test_missing_manifest_is_a_usage_error(ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(ws / "run"), str(tmp_path / "nope.jsonl"), "--quiet"]) == 2
    assert "nope.jsonl does not exist" in capsys.readouterr().err


def test_results_table_puts_every_system_side_by_side(ws: Path, capsys: pytest.CaptureFixture) -> None:
    """The prefix row is a real projector run: trained on the same m_A with compose.bridge.type=prefix."""
    from benchmarks import speech_table
    from tests.runs import write_recipe
    from tests.trained import FEW_STEPS

    prefix = run(load_recipe(write_recipe(ws, "prefix_run", stages=["compose"], compose={
        "anchor": {"source": str(ws / "anchor")}, "tower": {"source": str(ws / "run" / "encoder" / "model")},
        "bridge": {"type": "prefix", "every": 1, "frame_stack": 2}, "decoding": {"max_new_tokens": 12},
        "train": FEW_STEPS})))
    projector = sum(t.numel() for t in load_file(str(prefix / "compose" / "bridges.safetensors")).values())
    assert speech_table.main([str(ws / "run"), "--prefix", str(ws / "run"), "--limit", "3"]) == 2  # not a projector
    assert "give a run of compose.bridge.type=prefix" in capsys.readouterr().err
    assert speech_table.main([str(ws / "run"), "--prefix", str(prefix), "--limit", "3"]) == 0
    assert torch.is_grad_enabled()  # no global switch left behind for the code that runs next
    report = json.loads((ws / "run" / "eval" / "table.json").read_text())
    systems = [r["system"] for r in report["rows"]]
    assert [s.split()[0] for s in systems] == ["m_A", "anchor", "prefix", "CALM"]
    assert report["utterances"] == 3
    ctc, anchor = report["rows"][0]["metrics"], report["rows"][1]["metrics"]
    assert "cer" in ctc and "chrf" not in ctc  # m_A transcribes only
    assert {"cer", "chrf"} <= set(anchor) and report["rows"][1]["trained_parameters"] == 0
    assert report["rows"][2]["trained_parameters"] == projector  # the projector run's own weights
    assert report["rows"][3]["trained_parameters"] > 0
    ppl = report["english_perplexity"]
    assert ppl["anchor"] > 1 and ppl["composed_without_audio"] == pytest.approx(ppl["anchor"], rel=1e-5)
    out = capsys.readouterr().out
    assert "| CALM (cross-attention bridges) |" in out and "English perplexity" in out


def test_subset_scores_split_seen_from_unseen_sentences() -> None:
    items = [
        {"reference": "అమ్మ నీరు", "hypothesis": "అమ్మ నీరు", "duration": 60.0},
        {"reference": "పాలు ఇల్లు", "hypothesis": "పాలు", "duration": 30.0},
    ]
    got = subset_scores(items, {"అమ్మ, నీరు!"}, "telugu")  # normalised before comparing
    assert got["seen"]["utterances"] == 1 and got["seen"]["cer"] == 0.0 and got["seen"]["minutes"] == 1.0
    assert got["unseen"]["utterances"] == 1 and got["unseen"]["wer"] == 50.0


def test_report_has_seen_and_unseen_sentences_from_the_runs_training_data(
        ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train_texts = {r["text"] for r in clips(ws, "train")}
    seen = clips(ws, "train")[:3]
    unseen = [r for r in clips(ws, "test") + clips(ws, "dev") if r["text"] not in train_texts]
    assert len(unseen) >= 2  # the tiny corpus draws its sentences at random: some are new
    manifest = tmp_path / "mixed.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in seen + unseen), encoding="utf-8")
    out = tmp_path / "mixed.json"
    assert main([str(ws / "run"), str(manifest), "--out", str(out), "--tasks", "transcribe", "--quiet"]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["train_manifests"] == str(ws / "data" / "train.jsonl")
    subsets = report["subsets"]
    assert subsets["seen"]["utterances"] == 3 and subsets["unseen"]["utterances"] == len(unseen)
    by_id = {i["id"]: i for i in report["items"]}
    assert subsets["seen"]["cer"] == pytest.approx(scores([by_id[r["id"]] for r in seen], "telugu")["cer"])
    assert subsets["unseen"]["cer"] == pytest.approx(scores([by_id[r["id"]] for r in unseen], "telugu")["cer"])
    lines = capsys.readouterr().out
    assert "(seen sentences)" in lines and "(unseen sentences)" in lines


def test_without_training_manifests_the_report_covers_the_whole_set(
        ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert training_texts([str(tmp_path / "gone")])[0] is None
    train = ws / "data" / "train.jsonl"
    hidden = tmp_path / "train.jsonl"
    train.rename(hidden)
    try:
        out = tmp_path / "r.json"
        assert main([str(ws / "run"), str(ws / "data" / "test.jsonl"), "--out", str(out), "--tasks", "transcribe",
                     "--limit", "2", "--quiet"]) == 0
    finally:
        hidden.rename(train)
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["subsets"] is None and report["utterances"] == 2 and "not found" in report["train_manifests"]
    captured = capsys.readouterr()
    assert "whole set only" in captured.err and "unseen" not in captured.out


def test_report_scores_m_a_alone_and_a_ctc_weight_sweep(ws: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """Beside the composed transcript, m_A's own CTC transcript is scored; several --ctc-weight values run a
    sweep with one row per weight, and weight 0 is the plain search."""
    out = tmp_path / "sweep.json"
    manifest = ws / "data" / "test.jsonl"
    assert main([str(ws / "run"), str(manifest), "--out", str(out), "--tasks", "transcribe", "--quiet",
                 "--ctc-weight", "0", "0.9"]) == 0
    report = json.loads(out.read_text())
    assert all(item["ctc_hypothesis"] is not None for item in report["items"])
    assert report["metrics"]["ctc_cer"] is not None and "m_A CER" in capsys.readouterr().out
    assert [row["ctc_weight"] for row in report["sweep"]] == [0.0, 0.9]
    assert report["sweep"][0]["metrics"] == report["metrics"]  # the report itself is the first weight's
    plain = tmp_path / "plain.json"
    assert main([str(ws / "run"), str(manifest), "--out", str(plain), "--tasks", "transcribe", "--quiet",
                 "--no-draft"]) == 0
    assert [i["hypothesis"] for i in json.loads(plain.read_text())["items"]] == \
        [i["hypothesis"] for i in report["items"]]  # drafted (default) writes what token by token writes
