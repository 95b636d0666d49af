"""Loading towers: .gguf anchors (dequantised, cached), local directories, HF speech encoders, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speech_calm.core.tower import find_layers
from speech_calm.towers.conformer import ConformerEncoder
from speech_calm.towers.hf import HFSpeechTower
from speech_calm.towers.load import load_anchor, load_speech_tower, resolve_source
from tests import tiny


def test_gguf_anchor_is_dequantised_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEECH_CALM_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.gguf"
    reference = tiny.write_llama_gguf(str(path))
    anchor, tokenizer = load_anchor(str(path))
    ids = torch.tensor([[1, 5, 9, 12, 40]])
    with torch.no_grad():
        torch.testing.assert_close(anchor(input_ids=ids).logits, reference(input_ids=ids).logits)
    assert len(tokenizer) == 64
    cached = list((tmp_path / "cache" / "gguf").iterdir())
    assert len(cached) == 1 and (cached[0] / "model.safetensors").is_file()
    assert "quantization_config" not in (cached[0] / "config.json").read_text()
    stamp = (cached[0] / "model.safetensors").stat().st_mtime_ns
    again, _ = load_anchor(str(path))  # second load: from the cache, nothing rewritten
    assert (cached[0] / "model.safetensors").stat().st_mtime_ns == stamp
    assert all(not p.requires_grad for p in again.parameters()) and not again.training
    # the cached directory is itself a valid local anchor source
    local, _ = load_anchor(str(cached[0]))
    with torch.no_grad():
        torch.testing.assert_close(local(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_python_module_source_resolves_through_assemble(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = tmp_path / "fake_gguf_pkg.py"
    module.write_text(f"def assemble():\n    return {str(tmp_path / 'm.gguf')!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_source("python:fake_gguf_pkg") == str(tmp_path / "m.gguf")
    with pytest.raises(ValueError, match="not installed"):
        resolve_source("python:no_such_package_here")


def test_unreachable_hub_id_fails_with_advice() -> None:
    with pytest.raises(OSError, match="not a local directory or .gguf file.*HF_TOKEN"):
        load_anchor("no-such-org/no-such-model")


@pytest.mark.parametrize("kind", ["wav2vec2", "whisper", "w2v_bert"])
def test_hf_speech_tower_from_local_directory(tmp_path: Path, kind: str) -> None:
    model, fe = tiny.hf_speech_model(kind)
    model.save_pretrained(tmp_path)
    fe.save_pretrained(tmp_path)
    tower = HFSpeechTower(model, fe)
    loaded = load_speech_tower(str(tmp_path))
    assert isinstance(loaded, HFSpeechTower)
    audio, lens = tiny.audio_batch([16000, 9000])
    with torch.no_grad():
        a, b = tower(audio, lens), loaded(audio, lens)
    assert len(a.hidden_states) == 2 and torch.equal(a.mask, b.mask)
    for x, y in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(x, y)


def test_speech_tower_masks_follow_real_lengths() -> None:
    w2v = tiny.speech_tower("wav2vec2")
    audio, lens = tiny.audio_batch([16000, 8000])
    with torch.no_grad():
        out = w2v(audio, lens)
    assert out.mask.sum(-1).tolist() == w2v.model._get_feat_extract_output_lengths(lens).tolist()
    assert list(w2v.layers) == list(w2v.model.encoder.layers)  # not the equally long stack of feature convolutions
    whisper = tiny.speech_tower("whisper")
    with torch.no_grad():
        out = whisper(audio, lens)
    assert out.hidden_states[0].shape[1] == 1500  # Whisper always reads a 30 s window
    assert out.mask.sum(-1).tolist() == [50, 25]  # 100 and 50 frames of 10 ms, halved by its conv stride


def test_conformer_directory_loads_as_speech_tower(tmp_path: Path) -> None:
    tower = tiny.speech_tower("conformer")
    tower.save_pretrained(tmp_path / "enc")
    loaded = load_speech_tower(str(tmp_path / "enc"))
    assert isinstance(loaded, ConformerEncoder) and not loaded.training
    assert all(not p.requires_grad for p in loaded.parameters())


def test_checkpoint_that_does_not_fit_the_model_class_is_refused(tmp_path: Path) -> None:
    model, fe = tiny.hf_speech_model("whisper")
    model.get_encoder().save_pretrained(tmp_path)  # an encoder alone, where AutoModel builds the whole model
    fe.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="missing from the checkpoint"):
        load_speech_tower(str(tmp_path))


def test_find_layers_names_a_clear_error() -> None:
    with pytest.raises(ValueError, match="could not find a stack of 7 transformer layers"):
        find_layers(tiny.anchor("llama"), 7, 32)
