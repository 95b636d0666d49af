"""Every recipe loads strictly; the GPU recipe's architectures run end to end, built tiny."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

import speech_calm
from speech_calm.evaluate import main as evaluate_main
from speech_calm.infer import main as infer_main
from speech_calm.training.loop import run
from speech_calm.training.recipe import load_recipe
from tests import tiny
from tests.runs import make_workspace, write_recipe
from tests.trained import TONES_CLI

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))

# the real models telugu_large.yaml names, and the architectures this test builds tiny in their place
LARGE_MODELS = {"facebook/w2v-bert-2.0": "wav2vec2-bert", "sarvamai/sarvam-1": "llama"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_loads_and_starts_with_its_command(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.stages
    first = path.read_text().splitlines()[0]
    assert first.startswith("# "), "a recipe opens with a comment saying what it does"
    assert f"-m speech_calm.train recipes/{path.name}" in path.read_text(), "and gives the command that runs it"


def test_large_recipe_architectures_run_tiny(tmp_path: Path) -> None:
    recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "telugu_large.yaml")
    assert {recipe.encoder.source, recipe.compose.anchor.source} == set(LARGE_MODELS)
    ws = make_workspace(tmp_path)
    # Wav2Vec2-BERT (the encoder, with its feature extractor) and a Llama anchor, tiny and local
    from transformers import SeamlessM4TFeatureExtractor

    w2v = Wav2Vec2BertModel(Wav2Vec2BertConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64, output_hidden_size=32,
        conv_depthwise_kernel_size=3, feature_projection_input_dim=160,
    ))
    w2v.save_pretrained(tmp_path / "w2v_bert")
    SeamlessM4TFeatureExtractor().save_pretrained(tmp_path / "w2v_bert")
    tiny.save_anchor(str(tmp_path / "llama"), [ln for ln in (ws / "data/train.jsonl").read_text().splitlines()],
                     kind="llama")
    path = write_recipe(ws, "large")
    small_train = {"max_steps": 4, "batch_size": 4, "eval_every": 4, "eval_items": 2, "save_every": 4}
    overrides = [
        f"encoder.source={tmp_path / 'w2v_bert'}", f"compose.anchor.source={tmp_path / 'llama'}",
        "compose.anchor.dtype=float32", "compose.tower.dtype=float32", "device=cpu",
        "compose.bridge.pairs=[[3, 0], [3, 1]]",  # the recipe's pairs, for 4 m_A layers and 2 anchor layers
        *(f"encoder.train.{k}={v}" for k, v in small_train.items()),
        *(f"compose.train.{k}={v}" for k, v in small_train.items()),
    ]
    large = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "telugu_large.yaml", overrides)
    large.run_dir = str(ws / "large")
    large.data = load_recipe(path).data
    run_dir = run(large)
    assert (run_dir / "encoder" / "model" / "ctc_head.safetensors").is_file()
    assert (run_dir / "compose" / "bridges.safetensors").is_file()
    # the demo's composition settings, on the HF m_A: CTC compression reads the head the encoder stage saved
    assert large.compose.compress == "ctc" and large.compose.bridge.offset_bias and large.compose.chain_translation
    test = ws / "data" / "test.jsonl"
    assert evaluate_main([str(run_dir), str(test), "--limit", "2", "--quiet"]) == 0
    report = json.loads((run_dir / "eval" / "test.json").read_text())
    assert {"cer", "chrf"} <= set(report["metrics"])
    audio = str(ws / "data" / json.loads(test.read_text().splitlines()[0])["audio"])
    out = tmp_path / "subs"
    assert infer_main([str(run_dir), audio, *TONES_CLI, "--format", "srt", "json", "--word-timestamps", "--out",
                       str(out), "--quiet", "--device", "cpu"]) == 0
    result = json.loads((out / (Path(audio).stem + ".json")).read_text())
    assert result["text"] is not None and all("words" in seg for seg in result["segments"])
    # what ran has the architectures the recipe names: the saved m_A and the anchor the composition loaded
    built = {recipe.encoder.source: json.loads((run_dir / "encoder" / "model" / "config.json").read_text())["model_type"],
             recipe.compose.anchor.source: speech_calm.load(run_dir, device="cpu").speech.model.anchor.config.model_type}
    assert built == LARGE_MODELS
