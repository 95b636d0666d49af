"""The speech path's composed baselines with the demo's compose settings: the prefix projector (the same
targets, vocabulary, chaining and steps as CALM, as many parameters) and CALM trained on transcripts only,
whose English is the anchor's zero-shot continuation after the chained prompt's English marker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from speech_calm.evaluate import main
from speech_calm.infer import load
from speech_calm.speech.audio import load_audio, torch_threads
from tests.trained import baseline_runs, clips


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return baseline_runs(tmp_path_factory)


def _weights(run: Path) -> int:
    return sum(t.numel() for t in load_file(str(run / "compose" / "bridges.safetensors")).values())


def test_prefix_projector_trains_and_scores_with_the_demo_settings(runs: dict[str, Path], tmp_path: Path) -> None:
    """CTC-compressed memory, character targets over the script's vocabulary and chained translation work for
    the projector too; its parameters match the bridges' (offset prior included) within one hidden unit."""
    prefix = load(runs["prefix"], device="cpu")
    assert prefix.recipe.compose.bridge.type == "prefix" and prefix.recipe.compose.chain_translation
    calm, projector = _weights(runs["calm_s0"]), _weights(runs["prefix"])
    per_unit = prefix.speech.tower.hidden_size + prefix.speech.model.anchor.config.hidden_size + 1
    assert abs(calm - projector) <= per_unit
    out = tmp_path / "prefix.json"
    manifest = runs["ws"] / "data" / "test.jsonl"
    assert main([str(runs["prefix"]), str(manifest), "--out", str(out), "--limit", "3", "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert {"cer", "chrf"} <= set(report["metrics"])
    assert all(i["hypothesis"] is not None and i["translation"] is not None for i in report["items"])


def test_zero_shot_translation_continues_after_the_english_marker(runs: dict[str, Path], tmp_path: Path) -> None:
    """A chained run trained on transcripts only learnt to end after the transcript; asked to translate, its
    transcript is followed by the English marker and the anchor's own continuation, which evaluate scores."""
    model = load(runs["zero_shot"], device="cpu")
    assert model.recipe.compose.tasks == ["transcribe"] and model.speech.zero_shot_translation
    assert not load(runs["calm_s0"], device="cpu").speech.zero_shot_translation
    waves = [load_audio(r["audio"]) for r in clips(runs["ws"], "test")[:2]]
    marker = model.speech.token_ids(model.recipe.compose.prompts.english_marker)
    both = model.decode(waves, ["transcribe", "translate"])
    alone = model.decode(waves, ["transcribe"])
    for out, ref in zip(both, alone):
        tokens = out["translate"].tokens
        start = len(out["transcribe"].tokens)
        assert tokens[:start] == out["transcribe"].tokens and tokens[start:start + len(marker)] == marker
        assert out["transcribe"].text == ref["transcribe"].text  # the transcript is the one it writes alone
    out = tmp_path / "zero_shot.json"
    manifest = runs["ws"] / "data" / "test.jsonl"
    assert main([str(runs["zero_shot"]), str(manifest), "--out", str(out), "--tasks", "transcribe", "translate",
                 "--limit", "3", "--quiet"]) == 0
    assert {"cer", "chrf"} <= set(json.loads(out.read_text())["metrics"])
    assert torch.is_grad_enabled()
