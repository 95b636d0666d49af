"""Hugging Face speech towers as users load them: the mask covers every frame the layers give (also behind a
Wav2Vec2 adapter), a group-norm feature encoder reads an item in a batch as it reads it alone, and what is not a
tower or not a speech encoder is refused with what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

from speech_calm.core.bridge import BridgeConfig
from speech_calm.core.composition import Composition
from speech_calm.schema import ConfigError
from speech_calm.towers.ctc import HFCTCEncoder
from speech_calm.towers.hf import HFSpeechTower
from speech_calm.towers.load import load_speech_tower
from speech_calm.towers.vocab import CharVocab
from tests import tiny

CONV = dict(conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4)
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def wav2vec2(**kw) -> HFSpeechTower:  # noqa: ANN003
    torch.manual_seed(0)
    model = Wav2Vec2Model(Wav2Vec2Config(**SMALL, **CONV, **kw)).eval()
    return HFSpeechTower(model, Wav2Vec2FeatureExtractor(return_attention_mask=True))


def test_adapter_does_not_hide_half_of_the_frames() -> None:
    """The recorded states come from the encoder layers, before the adapter halves the sequence: an unpadded
    clip's frames are all real, and the CTC head of the encoder stage counts them all."""
    tower = wav2vec2(feat_extract_norm="layer", do_stable_layer_norm=True, add_adapter=True, adapter_stride=2,
                     num_adapter_layers=1, output_hidden_size=32)
    audio, lens = torch.randn(2, 8000), torch.tensor([8000, 5000])
    with torch.no_grad():
        out = tower(audio, lens)
        alone = tower(audio[1:, :5000], lens[1:])
    assert out.hidden_states[-1].shape[1] == int(out.mask[0].sum())  # every frame of the longest item
    assert int(out.mask[1].sum()) == alone.hidden_states[-1].shape[1]  # the shorter one: as many as alone
    _, ctc_lens = HFCTCEncoder(tower, CharVocab.build(["అమ్మ"])).ctc_logits(audio, lens)
    assert ctc_lens.tolist() == out.mask.sum(-1).tolist()


def test_group_norm_encoder_reads_a_batch_item_as_it_reads_it_alone() -> None:
    tower = wav2vec2(feat_extract_norm="group", do_stable_layer_norm=False)
    audio, lens = torch.randn(2, 12000), torch.tensor([8000, 12000])
    with torch.no_grad():
        batch = tower(audio, lens)
        alone = [tower(audio[i:i + 1, : int(n)], lens[i:i + 1]) for i, n in enumerate(lens)]
    for i, one in enumerate(alone):
        n = int(one.mask.sum())
        assert int(batch.mask[i].sum()) == n and not batch.mask[i, n:].any()
        for b, a in zip(batch.hidden_states, one.hidden_states):
            torch.testing.assert_close(b[i, :n], a[0, :n], rtol=1e-5, atol=1e-5)


def test_a_raw_hugging_face_model_is_refused_with_how_to_wrap_it() -> None:
    model, _ = tiny.hf_speech_model("wav2vec2")
    with pytest.raises(ConfigError, match=r"tower 'speech' is a Wav2Vec2Model, not an AugmentingTower: wrap"):
        Composition(tiny.anchor("llama"), {"speech": model}, BridgeConfig(every=1))


def test_a_causal_lm_folder_is_no_speech_tower(tmp_path: Path) -> None:
    tiny.save_anchor(str(tmp_path / "lm"), ["a few words"], kind="llama")
    with pytest.raises(ConfigError, match=r"is not a speech encoder: it holds a llama model \(LlamaForCausalLM\)"):
        load_speech_tower(str(tmp_path / "lm"))
