"""Our own speech encoder (the m_A trained on Vaani): log-mel features + conv subsampling + Conformer + CTC head.

    audio (B, T) 16 kHz float ──LogMelFrontend──> (B, F, n_mels), F ≈ T / 160          (10 ms frames)
        ──SpecAugment (train mode only)──> same
        ──Conv2dSubsampling──> (B, S, d_model), S ≈ F / subsampling                     (40 ms at 4)
        ──torchaudio Conformer layers, one at a time──> hidden_states[i] (B, S, d_model)
        ──ctc_head (last layer)──> logits (B, S, vocab_size)

`ConformerEncoder` is an `AugmentingTower`: the composition reads `hidden_states[i]` of every layer and the
(B, S) mask of real frames. A padded batch item gives the same hidden states on its real frames as when it
runs alone (eval mode): the STFT is not centred (no frame reads past the end of the audio), the subsampling
convolutions are "valid" and their output lengths are computed exactly, self-attention gets a key padding
mask, and the Conformer convolution module (whose depthwise kernel spans padded frames and whose BatchNorm
would pool them) is run through `_conformer_layer`, which zeroes padded frames before the depthwise
convolution and normalises over real frames only. Padded positions of every output are exactly zero.

Checkpoints are a directory: config.json, model.safetensors, vocab.json (see `save_pretrained`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchaudio
from safetensors.torch import load_file, save_file
from torch import nn
from torchaudio.models.conformer import ConformerLayer

from speech_calm.core.tower import AugmentingTower, TowerOutput
from speech_calm.towers.vocab import BLANK_ID, CharVocab

MODEL_TYPE = "speech_calm_conformer_ctc"  # config.json's "model_type": how loaders recognise this encoder

CONFIG_NAME = "config.json"

WEIGHTS_NAME = "model.safetensors"

VOCAB_NAME = "vocab.json"

# Conv2d subsampling stacks, as (kernel, stride) per convolution, applied to time and mel axes alike
# (the ESPnet/WeNet Conv2dSubsampling{4,6,8} layouts).
_SUBSAMPLING_LAYOUTS: dict[int, tuple[tuple[int, int], ...]] = {
    4: ((3, 2), (3, 2)),
    6: ((3, 2), (5, 3)),
    8: ((3, 2), (3, 2), (3, 2)),
}


@dataclass
class ConformerConfig:
    """Hyper-parameters of the Conformer-CTC encoder (embedded as-is in YAML recipes).

    The defaults are a small model meant to train from scratch in minutes on a 2-core CPU on 1–2 h of
    speech (≈ 4.1 M parameters): width 144 and 4 heads as Conformer-S, but 8 layers instead of 16 and a
    15-frame (0.6 s) depthwise kernel instead of 32, so that one step on 8 × 5 s of audio takes well under
    a second (12 layers cost 1.5×). 8 layers give the composition two taps at every 4th layer (3 and 7).
    Dropout is off: on CPU its random masks cost about 30% of a step, and a few epochs over 1–2 h do not
    overfit (SpecAugment regularises); set 0.1 for long runs on real data.
    """

    # --- features (16 kHz audio -> log-mel frames)
    sample_rate: int = 16000  # Hz the audio must have; resample before (speech_calm.speech.audio)
    n_mels: int = 80  # mel filterbank channels
    frame_length_ms: float = 25.0  # analysis window (Hann) length; also the FFT size
    frame_shift_ms: float = 10.0  # hop between feature frames
    f_min: float = 20.0  # lowest mel filter edge, Hz
    f_max: float = 8000.0  # highest mel filter edge, Hz (at most sample_rate / 2)
    log_floor: float = 1e-6  # mel energies are clamped to this before the log (digital silence)
    # --- SpecAugment (training only; masks are set to 0 = the utterance mean after normalisation)
    freq_masks: int = 2  # number of frequency masks per utterance
    freq_mask_width: int = 15  # maximum width of one frequency mask, in mel channels
    time_masks: int = 2  # number of time masks per utterance
    time_mask_width: int = 40  # maximum width of one time mask, in feature frames (10 ms each)
    time_mask_max_ratio: float = 0.05  # a time mask also covers at most this fraction of the utterance
    # --- conv2d subsampling
    subsampling: int = 4  # time reduction: 4, 6 or 8 (8 is too coarse for character CTC on Telugu)
    subsampling_channels: int = 64  # channels of the subsampling convolutions
    # --- Conformer
    d_model: int = 144  # hidden size of every Conformer layer (the tower's hidden_size)
    num_heads: int = 4  # self-attention heads (d_model must be divisible by it)
    ffn_dim: int = 576  # inner size of the two macaron feed-forward modules
    num_layers: int = 8  # Conformer layers (the tower's num_layers)
    depthwise_kernel_size: int = 15  # kernel of the depthwise convolution, in output frames (odd)
    dropout: float = 0.0  # in feed-forward, attention, convolution, after subsampling; 0.1 for long GPU runs
    positions: bool = False  # add sinusoidal absolute positions after subsampling (attention sees order)
    # --- CTC head
    vocab_size: int = 0  # CTC outputs incl. blank; 0 = take it from the CharVocab (set by ConformerEncoder)

    def __post_init__(self) -> None:
        errors = []
        if self.subsampling not in _SUBSAMPLING_LAYOUTS:
            errors.append(f"subsampling must be one of {sorted(_SUBSAMPLING_LAYOUTS)}, got {self.subsampling}")
        if self.d_model % self.num_heads:
            errors.append(f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if self.depthwise_kernel_size % 2 == 0:
            errors.append(f"depthwise_kernel_size must be odd, got {self.depthwise_kernel_size}")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            errors.append(f"need 0 <= f_min < f_max <= sample_rate/2, got {self.f_min}, {self.f_max}")
        if not 0.0 <= self.dropout < 1.0:
            errors.append(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.time_mask_max_ratio <= 1.0:
            errors.append(f"time_mask_max_ratio must be in (0, 1], got {self.time_mask_max_ratio}")
        for name in ("n_mels", "d_model", "num_heads", "ffn_dim", "num_layers", "subsampling_channels",
                     "sample_rate"):
            if getattr(self, name) < 1:
                errors.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width", "vocab_size"):
            if getattr(self, name) < 0:
                errors.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.freq_mask_width > self.n_mels:
            errors.append(f"freq_mask_width ({self.freq_mask_width}) exceeds n_mels ({self.n_mels})")
        if self.frame_shift_ms <= 0 or self.frame_length_ms < self.frame_shift_ms:
            errors.append("need 0 < frame_shift_ms <= frame_length_ms")
        if errors:
            raise ValueError("invalid ConformerConfig: " + "; ".join(errors))

    # Derived sizes, in samples, used by the frontend and by length arithmetic.
    @property
    def win_length(self) -> int:
        """Analysis window (= FFT size) in samples."""
        return round(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def hop_length(self) -> int:
        """Feature frame shift in samples."""
        return round(self.sample_rate * self.frame_shift_ms / 1000)

    @property
    def frame_rate_hz(self) -> float:
        """Output (hidden-state) frames per second: 25 Hz with the defaults."""
        return self.sample_rate / (self.hop_length * self.subsampling)

    def to_dict(self) -> dict:
        """Plain dict of the fields (JSON/YAML ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ConformerConfig:
        """Build from a dict; unknown keys are an error that names the nearest valid key."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                near = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ValueError(f"unknown ConformerConfig key {key!r}{hint}")
        return cls(**data)


class SpecAugment(nn.Module):
    """Frequency and time masking (Park et al. 2019) on normalised features, in train mode only.

    Unlike torchaudio's TimeMasking, time masks are drawn inside each utterance's real frames, with a width
    capped by `time_mask_max_ratio` of that utterance's length, so padding never absorbs a mask and short
    clips are not wiped out. Masked values are set to 0, the utterance mean after normalisation.
    """

    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        self.freq_masks = config.freq_masks
        self.freq_mask_width = config.freq_mask_width
        self.time_masks = config.time_masks
        self.time_mask_width = config.time_mask_width
        self.time_mask_max_ratio = config.time_mask_max_ratio

    @staticmethod
    def _spans(n_items: int, n_masks: int, max_width: torch.Tensor, extent: torch.Tensor, size: int,
               device: torch.device) -> torch.Tensor:
        """(B, size) bool: union of `n_masks` random spans per item, widths in [0, max_width] and inside
        [0, extent). `max_width`, `extent`: (B,) long."""
        u = torch.rand(n_items, n_masks, 2, device=device)
        width = (u[..., 0] * (max_width[:, None] + 1)).floor().long()  # (B, n)
        start = (u[..., 1] * (extent[:, None] - width + 1).clamp_min(1)).floor().long()  # (B, n)
        pos = torch.arange(size, device=device)[None, None, :]  # (1, 1, size)
        inside = (pos >= start[..., None]) & (pos < (start + width)[..., None])  # (B, n, size)
        return inside.any(dim=1)

    def forward(self, feats: torch.Tensor, frame_lens: torch.Tensor) -> torch.Tensor:
        """feats (B, F, n_mels), frame_lens (B,) -> masked feats (B, F, n_mels); identity in eval mode."""
        if not self.training:
            return feats
        batch, frames, mels = feats.shape
        device = feats.device
        if self.freq_masks and self.freq_mask_width:
            width = torch.full((batch,), self.freq_mask_width, device=device)
            extent = torch.full((batch,), mels, device=device)
            masked = self._spans(batch, self.freq_masks, width, extent, mels, device)  # (B, n_mels)
            feats = feats.masked_fill(masked[:, None, :], 0.0)
        if self.time_masks and self.time_mask_width:
            lens = frame_lens.to(device)
            width = (lens * self.time_mask_max_ratio).floor().long().clamp(max=self.time_mask_width)
            masked = self._spans(batch, self.time_masks, width, lens, frames, device)  # (B, F)
            feats = feats.masked_fill(masked[:, :, None], 0.0)
        return feats


class LogMelFrontend(nn.Module):
    """16 kHz waveform -> per-utterance normalised log-mel features, then SpecAugment in train mode.

    Frames are not centred (frame t covers samples [t·hop, t·hop + win)), so a frame never reads beyond an
    item's real audio and padding changes nothing. Features are always computed in float32 (the STFT has no
    bf16 kernel and the log needs the range), whatever dtype the module was cast to. The window and the
    filterbank are fixed by the config: they are not saved (non-persistent buffers) and stay float32.
    """

    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        self.win_length = config.win_length
        self.hop_length = config.hop_length
        self.log_floor = config.log_floor
        self._mel_args = dict(n_freqs=self.win_length // 2 + 1, f_min=config.f_min, f_max=config.f_max,
                              n_mels=config.n_mels, sample_rate=config.sample_rate)
        window, fbank = self._tables(torch.device("cpu"))
        self.register_buffer("window", window, persistent=False)  # (win_length,)
        self.register_buffer("fbank", fbank, persistent=False)  # (n_freqs, n_mels)
        self.spec_augment = SpecAugment(config)

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Hann window and HTK mel filterbank (unnormalised triangles), float32."""
        window = torch.hann_window(self.win_length, device=device)
        return window, torchaudio.functional.melscale_fbanks(**self._mel_args).to(device)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> LogMelFrontend:
        """Follow device moves, but rebuild the window and filterbank in float32 after a dtype cast
        (`model.to(torch.bfloat16)` would otherwise quantise them and shift the features)."""
        super()._apply(fn, recurse)
        if self.fbank.dtype != torch.float32:
            self.window, self.fbank = self._tables(self.fbank.device)
        return self

    def frame_lengths(self, audio_lens: torch.Tensor) -> torch.Tensor:
        """Number of feature frames of items with `audio_lens` samples (B,) -> (B,); 0 if shorter than a window."""
        return ((audio_lens - self.win_length).div(self.hop_length, rounding_mode="floor") + 1).clamp_min(0)

    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (B, T) float, audio_lens (B,) samples -> feats (B, F, n_mels) float32, frame_lens (B,) long.

        Padded frames (t >= frame_lens[b]) are 0. Needs T >= win_length.
        """
        with torch.autocast(device_type=audio.device.type, enabled=False):
            spec = torch.stft(
                audio.float(), n_fft=self.win_length, hop_length=self.hop_length, win_length=self.win_length,
                window=self.window, center=False, return_complex=True,
            )  # (B, n_freqs, F)
            power = spec.real.square() + spec.imag.square()
            mel = power.transpose(1, 2) @ self.fbank  # (B, F, n_mels)
            feats = mel.clamp_min(self.log_floor).log()

            frame_lens = self.frame_lengths(audio_lens)
            real = (torch.arange(feats.shape[1], device=feats.device)[None, :] < frame_lens[:, None])
            real = real[:, :, None].float()  # (B, F, 1)
            # Per-utterance mean/variance over real frames only, per mel channel: removes channel gain
            # and keeps the statistics of a padded item identical to the item alone.
            count = frame_lens.clamp_min(1)[:, None, None].float()
            mean = (feats * real).sum(dim=1, keepdim=True) / count  # (B, 1, n_mels)
            centred = (feats - mean) * real
            var = centred.square().sum(dim=1, keepdim=True) / count
            feats = centred * torch.rsqrt(var + 1e-5)  # padded frames stay 0
        return self.spec_augment(feats, frame_lens), frame_lens


class Conv2dSubsampling(nn.Module):
    """Log-mel (B, F, n_mels) -> (B, S, d_model) with S ≈ F / subsampling, by strided "valid" 2-D convolutions.

    Output frame s only reads input frames inside the item when s < out_lens[b] (exact length arithmetic
    below), so padding does not leak into real frames.
    """

    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        self.layout = _SUBSAMPLING_LAYOUTS[config.subsampling]
        convs, in_ch, freq = [], 1, config.n_mels
        for kernel, stride in self.layout:
            convs.append(nn.Conv2d(in_ch, config.subsampling_channels, kernel, stride))
            in_ch = config.subsampling_channels
            freq = (freq - kernel) // stride + 1
        if freq < 1:
            raise ValueError(f"n_mels={config.n_mels} is too small for subsampling {config.subsampling}")
        self.convs = nn.ModuleList(convs)
        self.proj = nn.Linear(config.subsampling_channels * freq, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def output_lengths(self, frame_lens: torch.Tensor) -> torch.Tensor:
        """Feature frames (B,) -> output frames (B,) (<= 0 means too short)."""
        for kernel, stride in self.layout:
            frame_lens = (frame_lens - kernel).div(stride, rounding_mode="floor") + 1
        return frame_lens

    def min_input_frames(self) -> int:
        """Fewest feature frames that give one output frame."""
        need = 1
        for kernel, stride in reversed(self.layout):
            need = (need - 1) * stride + kernel
        return need

    def forward(self, feats: torch.Tensor, frame_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, F, n_mels), frame_lens (B,) -> x (B, S, d_model), out_lens (B,)."""
        x = feats.unsqueeze(1)  # (B, 1, F, n_mels)
        for conv in self.convs:
            x = F.relu(conv(x))  # (B, C, F', n_mels')
        batch, channels, frames, freq = x.shape
        x = self.proj(x.transpose(1, 2).reshape(batch, frames, channels * freq))  # (B, S, d_model)
        return self.dropout(x), self.output_lengths(frame_lens)


def _masked_batch_norm(norm: nn.BatchNorm1d, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """BatchNorm over real frames only: x (B, C, S), real (B, S) bool -> (B, C, S), padded frames 0.

    In train mode the batch statistics (and the running averages) then ignore padding; in eval mode this
    equals `norm(x)` on the real frames.
    """
    x = x.transpose(1, 2)  # (B, S, C)
    out = torch.zeros_like(x)
    out[real] = norm(x[real])  # (N_real, C): BatchNorm1d normalises each channel over N_real
    return out.transpose(1, 2)


def _conformer_layer(layer: ConformerLayer, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """One torchaudio `ConformerLayer`, padding-exact: x (B, S, D), pad (B, S) True on padding -> (B, S, D).

    Same parameters and the same computation as `ConformerLayer.forward` (which takes (S, B, D) and the
    same key_padding_mask convention, True = ignore), except in the convolution module: padded frames are
    zeroed before the depthwise convolution (they would otherwise reach the last kernel//2 real frames) and
    BatchNorm sees real frames only. Padded output frames are set to 0.
    """
    real = ~pad

    def conv_block(h: torch.Tensor) -> torch.Tensor:  # (B, S, D) -> (B, S, D), residual added by caller
        module = layer.conv_module
        pointwise1, glu, depthwise, norm, act, pointwise2, drop = module.sequential
        if not isinstance(norm, nn.BatchNorm1d):
            raise TypeError(f"expected BatchNorm1d in the Conformer conv module, found {type(norm).__name__}")
        h = glu(pointwise1(module.layer_norm(h).transpose(1, 2)))  # (B, D, S)
        h = depthwise(h.masked_fill(pad[:, None, :], 0.0))
        h = act(_masked_batch_norm(norm, h, real))
        return drop(pointwise2(h)).transpose(1, 2)

    x = layer.ffn1(x) * 0.5 + x
    if layer.convolution_first:
        x = x + conv_block(x)
    h = layer.self_attn_layer_norm(x).transpose(0, 1)  # (S, B, D): torchaudio's MHA is not batch_first
    h, _ = layer.self_attn(query=h, key=h, value=h, key_padding_mask=pad, need_weights=False)
    x = layer.self_attn_dropout(h.transpose(0, 1)) + x
    if not layer.convolution_first:
        x = x + conv_block(x)
    x = layer.ffn2(x) * 0.5 + x
    x = layer.final_layer_norm(x)
    return x.masked_fill(pad[:, :, None], 0.0)


def ctc_greedy_decode(logits: torch.Tensor, lengths: torch.Tensor, blank: int = BLANK_ID) -> list[list[int]]:
    """Best-path CTC decoding: logits (B, S, V), lengths (B,) -> per item the ids after collapsing repeats
    and dropping blanks (a blank between two equal ids keeps both)."""
    best = logits.argmax(dim=-1).cpu()  # (B, S)
    out = []
    for b, n in enumerate(lengths.tolist()):
        ids = torch.unique_consecutive(best[b, :n])
        out.append(ids[ids != blank].tolist())
    return out


def _sinusoids(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """Transformer sinusoidal positions (length, dim): torchaudio's Conformer has none of its own, so without
    them self-attention sees a set of frames and order comes only from the convolutions."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class ConformerEncoder(AugmentingTower):
    """Conformer-CTC speech encoder; as an `AugmentingTower` it returns every layer's hidden states.

    Attributes: `config` (vocab_size resolved), `vocab` (CharVocab), `num_layers`, `hidden_size`,
    `modality` = "speech", `frame_rate_hz` (output frames per second).
    """

    modality = "speech"

    def __init__(self, config: ConformerConfig, vocab: CharVocab) -> None:
        super().__init__()
        if config.vocab_size not in (0, len(vocab)):
            raise ValueError(f"config.vocab_size={config.vocab_size} but the vocabulary has {len(vocab)} ids")
        self.config = dataclasses.replace(config, vocab_size=len(vocab))
        self.vocab = vocab
        self.num_layers = config.num_layers
        self.hidden_size = config.d_model
        self.frame_rate_hz = self.config.frame_rate_hz
        self.frontend = LogMelFrontend(config)
        self.subsampling = Conv2dSubsampling(config)
        # Only its layers are used (see _conformer_layer); Conformer.forward returns the last layer only.
        self.conformer = torchaudio.models.Conformer(
            input_dim=config.d_model, num_heads=config.num_heads, ffn_dim=config.ffn_dim,
            num_layers=config.num_layers, depthwise_conv_kernel_size=config.depthwise_kernel_size,
            dropout=config.dropout,
        )
        self.ctc_head = nn.Linear(config.d_model, len(vocab))

    # ----------------------------------------------------------------------------------- lengths

    @property
    def min_samples(self) -> int:
        """Shortest audio, in samples, that yields one output frame (85 ms with the defaults)."""
        return (self.subsampling.min_input_frames() - 1) * self.frontend.hop_length + self.frontend.win_length

    def output_lengths(self, audio_lens: torch.Tensor) -> torch.Tensor:
        """Output frames (B,) of items with `audio_lens` samples (B,)."""
        return self.subsampling.output_lengths(self.frontend.frame_lengths(audio_lens)).clamp_min(0)

    def _check_inputs(self, audio: torch.Tensor, audio_lens: torch.Tensor | None) -> torch.Tensor:
        """Validate (B, T) audio and (B,) lengths; returns the lengths as a long tensor on audio's device."""
        if not isinstance(audio, torch.Tensor) or audio.dim() != 2:
            shape = tuple(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
            raise ValueError(f"audio must be a (batch, samples) tensor, got shape {shape}; "
                             "add a batch dimension with audio.unsqueeze(0) and downmix multichannel audio")
        if not audio.is_floating_point():
            raise ValueError(f"audio must be float in [-1, 1], got {audio.dtype}")
        batch, total = audio.shape
        if audio_lens is None:
            audio_lens = torch.full((batch,), total, dtype=torch.long, device=audio.device)
        audio_lens = torch.as_tensor(audio_lens, device=audio.device)
        if audio_lens.shape != (batch,) or audio_lens.is_floating_point():
            raise ValueError(f"audio_lens must be an integer tensor of shape ({batch},), got "
                             f"{audio_lens.dtype} {tuple(audio_lens.shape)}")
        audio_lens = audio_lens.long()
        too_long = (audio_lens > total).nonzero().flatten().tolist()
        if too_long:
            raise ValueError(f"audio_lens exceed the audio tensor's {total} samples for item(s) {too_long}: "
                             f"{audio_lens[too_long].tolist()}")
        too_short = (audio_lens < self.min_samples).nonzero().flatten().tolist()
        if too_short:
            raise ValueError(f"item(s) {too_short} are shorter than the {self.min_samples} samples "
                             f"({1000 * self.min_samples / self.config.sample_rate:.0f} ms) this encoder needs: "
                             f"{audio_lens[too_short].tolist()}")
        bad = (~torch.isfinite(audio)).any(dim=1).nonzero().flatten().tolist()
        if bad:
            raise ValueError(f"audio of item(s) {bad} contains NaN or infinite samples")
        return audio_lens

    # ----------------------------------------------------------------------------------- forward

    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor | None = None) -> TowerOutput:
        """audio (B, T) float 16 kHz, audio_lens (B,) samples (None = all T) -> TowerOutput with
        hidden_states: num_layers tensors (B, S, d_model), layer i's output, padded frames 0;
        mask: (B, S) bool, True on real frames (S = max output length)."""
        audio_lens = self._check_inputs(audio, audio_lens)
        feats, frame_lens = self.frontend(audio, audio_lens)  # (B, F, n_mels) float32
        x, lens = self.subsampling(feats.to(self.subsampling.proj.weight.dtype), frame_lens)  # (B, S, D)
        real = torch.arange(x.shape[1], device=x.device)[None, :] < lens[:, None]  # (B, S)
        pad = ~real
        if self.config.positions:
            x = x + _sinusoids(x.shape[1], x.shape[2], x.device).to(x.dtype)
        x = x.masked_fill(pad[:, :, None], 0.0)
        hidden_states = []
        for layer in self.conformer.conformer_layers:
            x = _conformer_layer(layer, x, pad)
            hidden_states.append(x)
        return TowerOutput(hidden_states=tuple(hidden_states), mask=real)

    def ctc_logits(self, audio: torch.Tensor, audio_lens: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (B, T), audio_lens (B,) -> CTC logits (B, S, vocab_size) from the last layer, lengths (B,)."""
        out = self.forward(audio, audio_lens)
        return self.ctc_head(out.hidden_states[-1]), out.mask.sum(dim=1)

    def ctc_loss(self, audio: torch.Tensor, audio_lens: torch.Tensor | None, targets: torch.Tensor,
                 target_lens: torch.Tensor) -> torch.Tensor:
        """Mean CTC loss per target token: audio (B, T), audio_lens (B,), targets (B, U) padded ids
        (see CharVocab.encode_batch), target_lens (B,) -> scalar.

        An item whose transcript cannot fit its frames (CTC needs U + repeated-neighbour frames) gets loss 0
        (zero_infinity) and a warning: it usually means a wrong transcript or too much subsampling.
        """
        logits, lens = self.ctc_logits(audio, audio_lens)
        log_probs = logits.float().log_softmax(dim=-1).transpose(0, 1)  # (S, B, V) as F.ctc_loss wants
        targets = targets.to(logits.device)
        target_lens = target_lens.to(logits.device)
        valid = torch.arange(targets.shape[1], device=targets.device)[None, :] < target_lens[:, None]
        repeats = ((targets[:, 1:] == targets[:, :-1]) & valid[:, 1:]).sum(dim=1)
        infeasible = (target_lens + repeats > lens).nonzero().flatten().tolist()
        if infeasible:
            warnings.warn(f"CTC: transcripts of batch item(s) {infeasible} are longer than their "
                          f"{lens[infeasible].tolist()} frames; their loss is set to 0", stacklevel=2)
        return F.ctc_loss(log_probs, targets, lens, target_lens, blank=BLANK_ID, reduction="mean",
                          zero_infinity=True)

    @torch.no_grad()
    def greedy_decode(self, audio: torch.Tensor, audio_lens: torch.Tensor | None = None,
                      scripts: Sequence[str] | None = None) -> list[str]:
        """Transcripts of audio (B, T), audio_lens (B,) by best-path CTC decoding (runs in eval mode and
        restores the previous mode). `scripts` (B,): the script each item is written in (shared vocabularies)."""
        was_training = self.training
        self.eval()
        try:
            logits, lens = self.ctc_logits(audio, audio_lens)
        finally:
            self.train(was_training)
        paths = ctc_greedy_decode(logits, lens)
        return [self.vocab.decode(ids, scripts[i] if scripts else None) for i, ids in enumerate(paths)]

    # ----------------------------------------------------------------------------------- persistence

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write config.json, model.safetensors and vocab.json to `directory`, atomically: everything goes
        to a temporary sibling folder that is then renamed into place (an existing folder is replaced)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            with open(tmp / CONFIG_NAME, "w", encoding="utf-8") as f:
                json.dump({"model_type": MODEL_TYPE, **self.config.to_dict()}, f, indent=1)
                f.write("\n")
            state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt", "model_type": MODEL_TYPE})
            self.vocab.save(tmp / VOCAB_NAME)
            if directory.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
                os.replace(directory, old / directory.name)
                os.replace(tmp, directory)
                shutil.rmtree(old)
            else:
                os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu"
                        ) -> ConformerEncoder:
        """Load a directory written by `save_pretrained`; the model is returned in eval mode."""
        directory = Path(directory)
        for name in (CONFIG_NAME, WEIGHTS_NAME, VOCAB_NAME):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory} is not a ConformerEncoder checkpoint: {name} is missing")
        with open(directory / CONFIG_NAME, encoding="utf-8") as f:
            data = json.load(f)
        if data.pop("model_type", None) != MODEL_TYPE:
            raise ValueError(f"{directory / CONFIG_NAME} is not a {MODEL_TYPE} config")
        model = cls(ConformerConfig.from_dict(data), CharVocab.load(directory / VOCAB_NAME))
        model.load_state_dict(load_file(str(directory / WEIGHTS_NAME), device=str(device)), strict=True)
        return model.to(device).eval()
