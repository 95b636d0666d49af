"""On-the-fly waveform augmentation of m_A's training audio: voices, rooms and channels it never heard.

An m_A trained on a few TTS voices fails on another voice (the demo's held-out festival voice) mostly through
what differs between voices and recordings: speaking rate, pitch, vocal-tract length, room and channel. Each
transform below imitates one of them, the way speech toolkits do (Kaldi's speed perturbation and reverberation,
VTLP of Jaitly & Hinton 2013, telephone band and mu-law), with numpy and torch only:

    speed      resample as if recorded at 16 kHz·f: tempo, pitch and formants all scale by f (length / f)
    pitch      partials moved from f to r·f in the STFT (phase vocoder), the spectral envelope (formants) put
               back: another pitch, the same vocal tract and tempo
    vtlp       the spectral envelope warped by alpha (piecewise linear, Nyquist fixed): another vocal-tract
               length, the same pitch and tempo
    reverb     convolution with a synthetic room impulse response (direct path + exponentially decaying noise
               of a drawn RT60), loudness kept
    noise      white, pink or brown noise at a drawn SNR
    telephone  8 kHz, 300-3400 Hz band, 8-bit mu-law, back to 16 kHz

`Augmenter(cfg, seed)(wave, epoch, item)` is a pure function of (seed, epoch, item): an utterance appears once
per epoch, and the epoch's batch order depends only on (seed, epoch), so a resumed run sees the same audio as an
uninterrupted one. Each transform draws from its own random stream, so switching one on or off leaves the
others' draws unchanged. Training audio only: dev and test are never augmented.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from speech_calm.speech.audio import (
    SAMPLE_RATE,
    colored_noise,
    mix_at_snr,
    resample,
    rms,
    torch_threads,
)

if TYPE_CHECKING:
    from speech_calm.speech.config import AugmentConfig

__all__ = ["Augmenter", "add_noise", "pitch_shift", "reverb", "room_impulse", "speed", "telephone", "vtlp"]

_N_FFT, _HOP = 1024, 256  # 64 ms frames, 16 ms hop at 16 kHz: resolves the harmonics of a low voice
_SMOOTH = 31  # bins (~480 Hz) over which the spectral envelope averages power: odd, wider than one harmonic
_RATE_STEP = 100  # Hz: resampling rates are rounded to this, so few windowed-sinc kernels are built (and cached)
_STREAMS = ("speed", "pitch", "vtlp", "reverb", "noise", "telephone")


def speed(wave: np.ndarray, factor: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Play `wave` `factor` times faster (1.1: 10% shorter and higher), by resampling it as if recorded at
    sr·factor (Ko et al. 2015, Kaldi's 0.9/1.0/1.1)."""
    if factor == 1.0:
        return wave
    return resample(wave, round(sr * factor / _RATE_STEP) * _RATE_STEP, sr)


def _stft(wave: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    return torch.stft(x, _N_FFT, _HOP, window=torch.hann_window(_N_FFT), return_complex=True)  # (F, frames)


def _istft(spec: torch.Tensor, length: int) -> np.ndarray:
    return torch.istft(spec.contiguous(), _N_FFT, _HOP, window=torch.hann_window(_N_FFT), length=length).numpy()


def _at(x: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """Rows of x (F, frames) read at fractional bins src (F,), linearly interpolated; zero past the last bin."""
    last = x.shape[0] - 1
    lo = src.floor().long().clamp(0, last - 1)
    frac = (src - lo).clamp(0, 1).to(x.dtype)[:, None]
    out = x[lo] * (1 - frac) + x[lo + 1] * frac
    return out * (src <= last).to(x.dtype)[:, None]


def _envelope(mag: torch.Tensor) -> torch.Tensor:
    """The smooth spectral envelope of magnitudes (F, frames): the vocal tract's formants without the voice's
    harmonics (power averaged over `_SMOOTH` bins, wider than the harmonic spacing of voices up to ~400 Hz)."""
    kernel = torch.hann_window(_SMOOTH + 2, dtype=mag.dtype)[1:-1]
    power = torch.nn.functional.pad((mag**2).T[:, None], (_SMOOTH // 2, _SMOOTH // 2), mode="reflect")
    smooth = torch.nn.functional.conv1d(power, (kernel / kernel.sum())[None, None])[:, 0].T
    return smooth.clamp_min(1e-12).sqrt()


def _scaled_phase(spec: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """Phases (F, frames) for output bins whose content comes from input bins src (F,): each advances at its
    source's instantaneous frequency times the warp f / src (phase-vocoder style), so partials move for real."""
    f = torch.arange(spec.shape[0], dtype=torch.float64)
    near = src.round().long().clamp(0, spec.shape[0] - 1)
    phase = torch.angle(spec).to(torch.float64)
    expected = (2 * np.pi * _HOP / _N_FFT) * f[:, None]  # radians per hop at each bin's centre
    inst = expected[:, :1] + torch.remainder(torch.diff(phase, dim=1) - expected + np.pi, 2 * np.pi) - np.pi
    ratio = torch.where(src > 0, f / src.clamp(min=1e-9), torch.ones_like(f))[:, None]
    start = phase[near, :1]
    return torch.cat([start, start + torch.cumsum(inst[near] * ratio, dim=1)], dim=1).to(torch.float32)


def pitch_shift(wave: np.ndarray, semitones: float) -> np.ndarray:
    """Raise (or lower) the voice's pitch by `semitones`, keeping its formants and tempo: every partial moves
    from f to r·f, r = 2^(semitones/12) (phase vocoder), then the spectral envelope is put back."""
    r = 2.0 ** (semitones / 12.0)
    if r == 1.0 or len(wave) < _N_FFT:
        return wave
    with torch.no_grad():
        spec = _stft(wave)
        mag = spec.abs()
        src = torch.arange(spec.shape[0], dtype=torch.float64) / r
        moved = _at(mag, src)
        moved = moved * _envelope(mag) / _envelope(moved)  # formants where they were
        out = _istft(torch.polar(moved, _scaled_phase(spec, src)), len(wave))
    return _match_rms(out, wave)


def vtlp(wave: np.ndarray, alpha: float) -> np.ndarray:
    """Vocal-tract-length perturbation: the formants at frequency f move to alpha·f (alpha > 1: a shorter
    tract), piecewise linearly so that the Nyquist frequency stays put (Kaldi's VTLN warp); pitch and tempo
    are kept (the spectral envelope is warped, the harmonics stay)."""
    if alpha == 1.0 or len(wave) < _N_FFT:
        return wave
    with torch.no_grad():
        spec = _stft(wave)
        nyq = spec.shape[0] - 1
        f = torch.arange(nyq + 1, dtype=torch.float64)
        cut = 0.8 * nyq / max(1.0, alpha)  # below: f -> alpha f; above: the line to (nyq, nyq)
        hi = alpha * cut
        src = torch.where(f <= hi, f / alpha, cut + (f - hi) * (nyq - cut) / (nyq - hi))  # inverse warp
        mag = spec.abs()
        env = _envelope(mag)
        gain = _at(env, src) / env  # the warped envelope over the old one, the harmonics untouched
        out = _istft(spec * gain, len(wave))
    return _match_rms(out, wave)


def room_impulse(rt60: float, drr_db: float, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A synthetic room impulse response: a unit direct path, then Gaussian noise decaying by 60 dB over `rt60`
    seconds, scaled so the direct-to-reverberant energy ratio is `drr_db`."""
    n = max(2, int(rt60 * sr))
    t = np.arange(1, n) / sr
    tail = rng.standard_normal(n - 1) * np.exp(-3.0 * np.log(10.0) * t / rt60)  # amplitude: -60 dB at rt60
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail**2))
    return np.concatenate([[1.0], tail]).astype(np.float32)


def reverb(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """`wave` convolved with a room impulse response (FFT), cut to its length and brought to its loudness."""
    if wave.size == 0:
        return wave
    n = len(wave) + len(rir) - 1
    n_fft = 1 << (n - 1).bit_length()
    out = np.fft.irfft(np.fft.rfft(wave, n_fft) * np.fft.rfft(rir, n_fft), n_fft)[: len(wave)]
    return _match_rms(out, wave)


def add_noise(wave: np.ndarray, snr_db: float, color: str, rng: np.random.Generator) -> np.ndarray:
    """`wave` plus `color` noise (white, pink, brown) at `snr_db` dB below its RMS."""
    return mix_at_snr(wave, colored_noise(len(wave), color, rng), snr_db)


def telephone(wave: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A narrow-band phone call: 8 kHz, the 300-3400 Hz band, 8-bit mu-law (G.711), back to `sr`."""
    if wave.size == 0:
        return wave
    narrow = resample(wave, sr, 8000).astype(np.float64)
    spectrum = np.fft.rfft(narrow)
    hz = np.fft.rfftfreq(len(narrow), 1.0 / 8000)
    spectrum[(hz < 300) | (hz > 3400)] = 0.0
    narrow = np.fft.irfft(spectrum, len(narrow))
    peak = np.max(np.abs(narrow)) or 1.0
    x = np.clip(narrow / peak, -1.0, 1.0)  # a phone's gain control: full scale before the codec
    mu = 255.0
    code = np.round((np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) + 1) / 2 * mu)  # 0..255
    y = (code / mu) * 2 - 1
    x = np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu
    out = resample((x * peak).astype(np.float32), 8000, sr)
    return _fit(out, len(wave))


def _fit(wave: np.ndarray, n: int) -> np.ndarray:
    """Cut or zero-pad to n samples (resampling may round the length by a sample)."""
    if len(wave) >= n:
        return np.ascontiguousarray(wave[:n], dtype=np.float32)
    return np.pad(wave, (0, n - len(wave))).astype(np.float32)


def _match_rms(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    level = rms(out)
    scale = rms(ref) / level if level > 0 else 1.0
    return (out * scale).astype(np.float32)


class Augmenter:
    """The recipe's `encoder.augment` applied to one training utterance at a time (see the module docstring)."""

    def __init__(self, cfg: AugmentConfig, seed: int) -> None:
        self.cfg = cfg
        self.seed = seed

    def _streams(self, epoch: int, item: int) -> dict[str, np.random.Generator]:
        children = np.random.SeedSequence([self.seed, epoch, item]).spawn(len(_STREAMS))
        return {name: np.random.default_rng(s) for name, s in zip(_STREAMS, children)}

    def __call__(self, wave: np.ndarray, epoch: int, item: int) -> np.ndarray:
        """The augmented copy of `wave` (16 kHz mono float32) for training item `item` in epoch `epoch`."""
        with torch_threads(1):  # one short clip: thread start-up costs more than the FFTs (10x on 2 cores)
            return self._augment(wave, self._streams(epoch, item))

    def _augment(self, wave: np.ndarray, rng: dict[str, np.random.Generator]) -> np.ndarray:
        c = self.cfg
        if c.speeds:
            wave = speed(wave, float(rng["speed"].choice(c.speeds)))
        if rng["pitch"].random() < c.pitch_prob:
            wave = pitch_shift(wave, float(rng["pitch"].uniform(-c.pitch_semitones, c.pitch_semitones)))
        if rng["vtlp"].random() < c.vtlp_prob:
            wave = vtlp(wave, float(rng["vtlp"].uniform(1 - c.vtlp_warp, 1 + c.vtlp_warp)))
        if rng["reverb"].random() < c.reverb_prob:
            g = rng["reverb"]
            rir = room_impulse(float(g.uniform(*c.reverb_rt60)), float(g.uniform(*c.reverb_drr_db)), g)
            wave = reverb(wave, rir)
        if rng["noise"].random() < c.noise_prob:
            g = rng["noise"]
            wave = add_noise(wave, float(g.uniform(*c.noise_snr_db)), str(g.choice(["white", "pink", "brown"])), g)
        if rng["telephone"].random() < c.telephone_prob:
            wave = telephone(wave)
        return np.asarray(wave, dtype=np.float32)
