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

from speech_calm.towers.conformer import ConformerConfig, ConformerEncoder
from speech_calm.towers.hf import HFSpeechTower, HFTextTower
from speech_calm.towers.vocab import CharVocab

VOCAB = 128
WIDTH = 32
ANCHORS = ("gemma3", "llama", "qwen2", "gpt2")
SPEECH_TOWERS = ("conformer", "whisper", "wav2vec2", "hubert", "w2v_bert")


def anchor(kind: str, seed: int = 0, layers: int = 2, vocab: int = VOCAB, init: float = 0.02,
           window: int = 4) -> torch.nn.Module:
    """A tiny random causal LM of the given architecture, in eval mode (`init`: weight init std; `window`:
    Gemma's sliding window, small by default so that tests cross it)."""
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=init)
    if kind == "gemma3":
        cfg = Gemma3TextConfig(
            hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4,
            num_key_value_heads=1, head_dim=8, sliding_window=window, **common,
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
    if kind == "conformer":
        torch.manual_seed(seed)
        cfg = ConformerConfig(d_model=WIDTH, num_heads=4, ffn_dim=64, num_layers=2, subsampling_channels=8,
                              depthwise_kernel_size=3)
        return ConformerEncoder(cfg, CharVocab.build(["నమస్కారం అమ్మ"])).eval()
    return HFSpeechTower(*hf_speech_model(kind, seed))


def hf_speech_model(kind: str, seed: int = 2) -> tuple[torch.nn.Module, object]:
    """A tiny random HF speech model (as a user would load it: Whisper whole) and its feature extractor."""
    torch.manual_seed(seed)
    if kind == "whisper":
        cfg = WhisperConfig(
            vocab_size=VOCAB, num_mel_bins=80, d_model=WIDTH, encoder_layers=2, encoder_attention_heads=4,
            decoder_layers=1, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
            max_source_positions=1500, max_target_positions=32, pad_token_id=0, bos_token_id=1, eos_token_id=2,
            decoder_start_token_id=1,
        )
        return WhisperModel(cfg).eval(), WhisperFeatureExtractor(feature_size=80)
    conv = dict(conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=4, feat_extract_norm="layer", do_stable_layer_norm=True)
    small = dict(hidden_size=WIDTH, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    if kind == "wav2vec2":
        return Wav2Vec2Model(Wav2Vec2Config(**small, **conv)).eval(), Wav2Vec2FeatureExtractor(return_attention_mask=True)
    if kind == "hubert":
        return HubertModel(HubertConfig(**small, **conv)).eval(), Wav2Vec2FeatureExtractor(return_attention_mask=True)
    if kind == "w2v_bert":
        cfg = Wav2Vec2BertConfig(**small, output_hidden_size=WIDTH, conv_depthwise_kernel_size=3,
                                 feature_projection_input_dim=160)
        return Wav2Vec2BertModel(cfg).eval(), SeamlessM4TFeatureExtractor()
    raise ValueError(kind)


def write_llama_gguf(path: str, seed: int = 0) -> LlamaForCausalLM:
    """Write a tiny random Llama as an F32 `.gguf` file (llama.cpp tensor names); returns the HF model."""
    import gguf

    torch.manual_seed(seed)
    v, d, layers, heads, kv, ff = 64, WIDTH, 2, 4, 2, 64
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=v, hidden_size=d, intermediate_size=ff, num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv, bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
    )).eval()
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(128)
    w.add_embedding_length(d)
    w.add_block_count(layers)
    w.add_feed_forward_length(ff)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(v)
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"\u2581w{i}" for i in range(v - 3)])
    w.add_token_scores([0.0] * v)
    w.add_token_types([2, 3, 3] + [1] * (v - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    def permute(t: torch.Tensor, n: int):  # noqa: ANN202 - HF q/k rows to llama.cpp's rotary layout
        t = t.numpy()
        return t.reshape(n, 2, t.shape[0] // n // 2, *t.shape[1:]).swapaxes(1, 2).reshape(t.shape)

    sd = model.state_dict()
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].numpy())
    names = {"input_layernorm": "attn_norm", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    for i in range(layers):
        p = f"model.layers.{i}."
        for hf, cpp in names.items():
            w.add_tensor(f"blk.{i}.{cpp}.weight", sd[f"{p}{hf}.weight"].numpy())
        w.add_tensor(f"blk.{i}.attn_q.weight", permute(sd[p + "self_attn.q_proj.weight"], heads))
        w.add_tensor(f"blk.{i}.attn_k.weight", permute(sd[p + "self_attn.k_proj.weight"], kv))
    w.add_tensor("output_norm.weight", sd["model.norm.weight"].numpy())
    w.add_tensor("output.weight", sd["lm_head.weight"].numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


def tokenizer(texts: list[str], vocab_size: int = 200):  # noqa: ANN201 - a PreTrainedTokenizerFast
    """A small byte-level BPE tokenizer trained on `texts` (Telugu and English both tokenize), with
    <pad>=0, <bos>=1, <eos>=2, <unk>=3 as the tiny anchors expect."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<bos>", "<eos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>")


def save_anchor(directory: str, texts: list[str], kind: str = "gemma3", seed: int = 0) -> None:
    """A tiny anchor LM with a tokenizer trained on `texts`, saved as a local model directory."""
    tok = tokenizer(texts)
    # embeddings of std 0.02 in width 32 cap every logit near ±0.6 after the final norm: a larger init lets
    # the tiny anchor express confident predictions, as a real pretrained anchor does
    # (and a sliding window wider than a prompt, or the last tokens could not see a prefix before it)
    model = anchor(kind, seed, vocab=len(tok), init=0.3, window=64)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)


WORDS = [("అమ్మ", "mother"), ("నీరు", "water"), ("పాలు", "milk"), ("ఇల్లు", "house"), ("రాము", "Ramu")]


def write_corpus(directory: str, n_train: int = 20, n_dev: int = 4, n_test: int = 4, seed: int = 0) -> None:
    """A tiny speech corpus in the manifest format: two-word Telugu sentences with English translations,
    "spoken" as one tone per character (a learnable, deterministic sound for each symbol)."""
    import json
    import random as _random
    from pathlib import Path

    import numpy as np

    from speech_calm.speech.audio import write_flac

    rng = _random.Random(seed)
    root = Path(directory)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    chars = sorted({c for w, _ in WORDS for c in w} | {" "})
    for split, n, speakers in (("train", n_train, ["s1", "s2"]), ("dev", n_dev, ["s3"]), ("test", n_test, ["s4"])):
        rows = []
        for k in range(n):
            (a, ea), (b, eb) = rng.sample(WORDS, 2)
            text = f"{a} {b}"
            t = np.arange(int(0.06 * 16000)) / 16000
            wave = np.concatenate([0.3 * np.sin(2 * np.pi * (300 + 60 * chars.index(c)) * t) for c in text])
            wave = wave + 0.01 * np.random.default_rng(k).standard_normal(len(wave))
            uid = f"{split}_{k:03d}"
            write_flac(root / "audio" / f"{uid}.flac", wave.astype(np.float32))
            rows.append({"id": uid, "audio": f"audio/{uid}.flac", "duration": len(wave) / 16000, "text": text,
                         "text_raw": text, "text_code_switched": text, "translation": f"{ea} and {eb}",
                         "speaker": speakers[k % len(speakers)], "gender": "female", "language": "telugu",
                         "state": "", "district": "", "source": "test"})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def audio_batch(lengths: list[int], seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Random speech-like audio (B, T) zero-padded on the right, and lengths (B,) in samples."""
    g = torch.Generator().manual_seed(seed)
    audio = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        t = torch.arange(n) / 16000
        audio[i, :n] = 0.3 * torch.sin(2 * torch.pi * (200 + 50 * i) * t) + 0.05 * torch.randn(n, generator=g)
    return audio, torch.tensor(lengths)


def open_gates(model: torch.nn.Module, value: float = 0.7) -> None:
    """Gates start at 0 (identity); open them so the bridges really change the anchor."""
    with torch.no_grad():
        for name, p in model.trainable_parameters():
            if name.endswith("gate.scale"):
                p.fill_(value)


def prompt(b: int, t: int, seed: int = 0) -> torch.Tensor:
    """(b, t) random token ids of the tiny vocabulary (above the special ids)."""
    return torch.randint(3, VOCAB, (b, t), generator=torch.Generator().manual_seed(seed))
