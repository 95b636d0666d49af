"""Stage `cascade` and the cascade baselines: m_A's CTC transcript → the anchor translating it, few-shot or with
LoRA adapters whose parameter count matches the compose stage's bridges."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from speech_calm.core.baselines import lora_targets
from speech_calm.speech.audio import torch_threads
from speech_calm.towers.load import load_anchor
from speech_calm.training.recipe import load_recipe
from speech_calm.training.stages.cascade import (
    cascade_model,
    examples,
    rows,
    train_pairs,
    translate,
)
from tests.trained import baseline_runs


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return baseline_runs(tmp_path_factory)


def test_lora_rank_matches_the_bridges_parameter_count(runs: dict[str, Path]) -> None:
    """The adapters hold as many parameters as the demo-setting bridges on the same m_A, within one rank."""
    info = json.loads((runs["cascade"] / "cascade" / "params.json").read_text())
    bridges = sum(t.numel() for t in load_file(str(runs["calm_s0"] / "compose" / "bridges.safetensors")).values())
    assert info["bridge_parameters"] == bridges
    recipe = load_recipe(runs["cascade"] / "recipe.yaml", trained=True)
    anchor, _ = load_anchor(recipe.compose.anchor.source)
    per_rank = sum(m.in_features + m.out_features for m in lora_targets(anchor, recipe.cascade.targets))
    assert info["trainable"] == info["rank"] * per_rank and abs(info["trainable"] - bridges) <= per_rank / 2
    assert info["train_rows"] == len(train_pairs(recipe))
    log = [json.loads(x) for x in (runs["cascade"] / "cascade" / "metrics.jsonl").read_text().splitlines()]
    assert any("train_loss" in r for r in log) and any("dev_chrf" in r for r in log)  # trained, scored on dev


def test_few_shot_prompts_hold_fixed_training_examples(runs: dict[str, Path]) -> None:
    """The examples are the first training pairs with English (chosen before any test item is seen), the
    same for every prompt, never the sentence itself; the prompt ends where the English begins."""
    recipe = load_recipe(runs["cascade"] / "recipe.yaml", trained=True)
    shots = examples(recipe, 2)
    assert shots == train_pairs(recipe)[:2]
    first, other = rows(recipe.cascade, "telugu", shots, [shots[0], ("మరొక వాక్యం", "another sentence")])
    assert first.prompt.count("\nEnglish: ") == 1 and shots[1][0] in first.prompt  # not its own example
    assert other.prompt.startswith("Translate Telugu to English.\n\nTelugu: " + shots[0][0])
    assert other.prompt.endswith("Telugu: మరొక వాక్యం\nEnglish:") and other.target == " another sentence"
    with pytest.raises(ValueError, match="need 1000 training utterances"):
        examples(recipe, 1000)


def test_both_cascades_translate_transcripts(runs: dict[str, Path]) -> None:
    """The few-shot cascade is the frozen anchor; the adapted one loads the stage's adapters, which training
    moved: the two compute different next-token distributions on the same prompt."""
    recipe = load_recipe(runs["cascade"] / "recipe.yaml", trained=True)
    frozen, shots, info = cascade_model(recipe, runs["cascade"], adapted=False)
    adapted, adapted_shots, adapted_info = cascade_model(recipe, runs["cascade"], adapted=True)
    assert info["trainable"] == 0 and adapted_info["rank"] >= 1
    assert len(shots) == recipe.cascade.shots and len(adapted_shots) == recipe.cascade.adapted_shots
    transcripts = ["అమ్మ నీరు", "పాలు"]
    for tm, k in ((frozen, shots), (adapted, adapted_shots)):
        said = translate(tm, recipe, transcripts, k)
        assert len(said) == 2 and all(isinstance(s, str) and "\n" not in s for s in said)
    row = rows(recipe.cascade, "telugu", [], [("అమ్మ నీరు", "")])[0]
    ids = torch.tensor([frozen.prompt_ids(row.prompt)])
    with torch.no_grad():
        a, b = frozen.model(ids).logits[0, -1], adapted.model(ids).logits[0, -1]
    assert not torch.allclose(a, b)
