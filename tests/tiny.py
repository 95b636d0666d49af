"""Tiny random towers built from configs (2 layers, width 32): no downloads, fast on a CPU."""

from __future__ import annotations

import torch
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    HubertConfig,
    HubertModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    SeamlessM4TFeatureExtractor,
    Wav2Vec2BertConfig,
    Wav2Vec2BertModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperModel,
)

from speech_calm.encoder import ConformerConfig, ConformerEncoder
from speech_calm.towers import HFSpeechTower, HFTextTower
from speech_calm.vocab import CharVocab

VOCAB = 128
WIDTH = 32
ANCHORS = ("gemma3", "llama", "qwen2", "gpt2")
SPEECH_TOWERS = ("conformer", "whisper", "wav2vec2", "hubert", "w2v_bert")


def anchor(kind: str, seed: int = 0, layers: int = 2) -> torch.nn.Module:
    """A tiny random causal LM of the given architecture, in eval mode."""
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if kind == "gemma3":
        cfg = Gemma3TextConfig(
            hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
            num_key_value_heads=1, head_dim=8, sliding_window=4, **common,
        )
        model = Gemma3ForCausalLM(cfg)
    elif kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(
            hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
            num_key_value_heads=2, **common,
        ))
    elif kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(
            hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
            num_key_value_heads=2, **common,
        ))
    elif kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=WIDTH, n_layer=layers, n_head=4, n_positions=256, **common))
    else:
        raise ValueError(kind)
    return model.eval()


def text_tower(seed: int = 1, vocab: int = VOCAB) -> HFTextTower:
    """A tiny Llama as a text m_A (same vocabulary as the anchors unless `vocab` says otherwise)."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    return HFTextTower(LlamaForCausalLM(cfg).eval())


def speech_tower(kind: str, seed: int = 2) -> torch.nn.Module:
    """A tiny random speech tower of the given family."""
    torch.manual_seed(seed)
    if kind == "conformer":
        cfg = ConformerConfig(d_model=WIDTH, num_heads=4, ffn_dim=64, num_layers=2, subsampling_channels=8,
                              depthwise_kernel_size=3)
        return ConformerEncoder(cfg, CharVocab.build(["నమస్కారం అమ్మ"])).eval()
    if kind == "whisper":
        cfg = WhisperConfig(
            vocab_size=VOCAB, num_mel_bins=80, d_model=WIDTH, encoder_layers=2, encoder_attention_heads=4,
            decoder_layers=1, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
            max_source_positions=1500, max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=1,
        )
        return HFSpeechTower(WhisperModel(cfg).eval(), WhisperFeatureExtractor(feature_size=80))
    conv = dict(conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=4, feat_extract_norm="layer", do_stable_layer_norm=True)
    small = dict(hidden_size=WIDTH, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    if kind == "wav2vec2":
        return HFSpeechTower(Wav2Vec2Model(Wav2Vec2Config(**small, **conv)).eval(),
                             Wav2Vec2FeatureExtractor(return_attention_mask=True))
    if kind == "hubert":
        return HFSpeechTower(HubertModel(HubertConfig(**small, **conv)).eval(),
                             Wav2Vec2FeatureExtractor(return_attention_mask=True))
    if kind == "w2v_bert":
        cfg = Wav2Vec2BertConfig(**small, output_hidden_size=WIDTH, conv_depthwise_kernel_size=3,
                                 feature_projection_input_dim=160)
        return HFSpeechTower(Wav2Vec2BertModel(cfg).eval(), SeamlessM4TFeatureExtractor())
    raise ValueError(kind)


def audio_batch(lengths: list[int], seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Random speech-like audio (B, T) zero-padded on the right, and lengths (B,) in samples."""
    g = torch.Generator().manual_seed(seed)
    audio = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        t = torch.arange(n) / 16000
        audio[i, :n] = 0.3 * torch.sin(2 * torch.pi * (200 + 50 * i) * t) + 0.05 * torch.randn(n, generator=g)
    return audio, torch.tensor(lengths)
