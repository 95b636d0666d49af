"""Audio I/O: read any soundfile-readable input as 16 kHz mono float32, write FLAC atomically, and
the few signal helpers (gain, coloured noise, mixing at an SNR) that augmentation and the synthetic
corpus need.

Reading goes through soundfile (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3 from libsndfile 1.1 on,
...) rather than ``torchaudio.load``, which in torchaudio 2.11 needs torchcodec/FFmpeg.  What libsndfile
cannot read (M4A/AAC, WebM, WMA, ...) is decoded by an ``ffmpeg`` found on PATH, when there is one.
Resampling uses
``torchaudio.functional.resample`` (windowed sinc, band-limited), so 44.1 or 48 kHz input is
low-pass filtered before decimation instead of aliased.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np
import soundfile as sf

from speech_calm.files import atomic_write

__all__ = [
    "SAMPLE_RATE",
    "AudioError",
    "AudioSource",
    "read_audio",
    "load_audio",
    "to_mono",
    "resample",
    "limit_torch_threads",
    "torch_threads",
    "encode_audio",
    "write_flac",
    "apply_gain_db",
    "rms",
    "colored_noise",
    "mix_at_snr",
]

# what a directory of recordings is searched for (a file named explicitly is tried whatever its name)
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".webm", ".wma",
                    ".aif", ".aiff", ".caf", ".au", ".w64", ".rf64")
SAMPLE_RATE = 16000

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]


class AudioError(ValueError):
    """An audio input that cannot be used; the message names the input and what is wrong."""


def _describe(src: AudioSource, name: str | None) -> str:
    if name:
        return name
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        return f"<{len(src)} bytes of audio>"
    return getattr(src, "name", "<audio stream>")


def read_audio(src: AudioSource, *, name: str | None = None) -> tuple[np.ndarray, int]:
    """Decode ``src`` (a path, raw file bytes or a binary file object) without resampling.

    Returns ``(samples, sample_rate)`` with samples float32 of shape (frames, channels); a file that
    libsndfile cannot read is decoded by ffmpeg when it is on PATH (then already 16 kHz mono).
    Raises :class:`AudioError` for missing, empty, undecodable or non-finite audio.
    """
    label = _describe(src, name)
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise AudioError(f"{label}: audio is empty (0 bytes)")
        src = io.BytesIO(bytes(src))
    elif isinstance(src, (str, os.PathLike)) and not os.path.isfile(src):
        raise AudioError(f"{label}: no such audio file")
    elif isinstance(src, (str, os.PathLike)) and os.path.getsize(src) == 0:
        raise AudioError(f"{label}: audio file is empty (0 bytes)")
    try:
        data, sr = sf.read(src, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        if not isinstance(src, (str, os.PathLike)):  # dataset bytes: libsndfile's verdict stands (see below)
            raise AudioError(f"{label}: cannot decode audio ({exc}); is it a WAV/FLAC/OGG/MP3 file?") from exc
        data, sr = _read_with_ffmpeg(src, label, exc)
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioError(f"{label}: audio has no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"{label}: audio contains NaN or infinite samples")
    return data, int(sr)


# Containers and codecs that libsndfile does not read; only ffmpeg helps with these.
FFMPEG_ONLY = (".m4a", ".mp4", ".aac", ".webm", ".wma", ".amr", ".3gp", ".mka", ".mkv", ".ac3")


def _read_with_ffmpeg(src: str | os.PathLike, label: str, sf_error: Exception) -> tuple[np.ndarray, int]:
    """Decode a file libsndfile could not read with the ``ffmpeg`` on PATH, as (frames, 1) float32 at 16 kHz.

    Files only: bytes and streams come from datasets, where a clip libsndfile rejects is a corrupt row to
    drop, not one that ffmpeg should half-decode. ffmpeg downmixes and resamples itself.
    """
    suffix = Path(src).suffix.lower()
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        if suffix in FFMPEG_ONLY:
            raise AudioError(
                f"{label}: cannot decode {suffix} audio: libsndfile reads WAV, FLAC, OGG (Vorbis, Opus) and MP3, "
                f"and {suffix} needs ffmpeg, which is not on PATH; install it (e.g. apt-get install ffmpeg) or "
                f"convert the file to FLAC"
            ) from sf_error
        raise AudioError(
            f"{label}: cannot decode audio ({sf_error}); is it a WAV/FLAC/OGG/MP3 file? (installing ffmpeg "
            f"lets speech_calm read other formats)"
        ) from sf_error
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-i", os.fspath(src), "-f", "f32le", "-acodec", "pcm_f32le",
           "-ac", "1", "-ar", str(SAMPLE_RATE), "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioError(
            f"{label}: cannot decode audio: libsndfile ({sf_error}) and ffmpeg "
            f"({reason[-1] if reason else f'exit code {proc.returncode}'}) both failed; is it an audio file?"
        ) from sf_error
    samples = np.frombuffer(proc.stdout, dtype="<f4").astype(np.float32)
    return samples[:, None], SAMPLE_RATE


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) or (frames,) array into (frames,) float32."""
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    if samples.shape[1] == 1:
        return np.ascontiguousarray(samples[:, 0], dtype=np.float32)
    return samples.mean(axis=1, dtype=np.float32)


@lru_cache(maxsize=32)
def _resampler(orig_sr: int, sr: int):
    # Building the windowed-sinc kernel costs more than applying it (e.g. 22.05 -> 48 kHz has 320
    # phases), so each rate pair's kernel is built once per process: the same maths as
    # torchaudio.functional.resample, with its default filter settings.
    import torchaudio.transforms as T

    return T.Resample(orig_sr, sr)


def limit_torch_threads(n: int = 1) -> int:
    """Set torch's intra-op threads to ``n``; return the previous count.

    Resampling one clip is far faster single-threaded (about 2 ms instead of 40 ms for 4 s of
    22 kHz audio on 2 cores): thread start-up costs more than the convolution.  Data-preparation
    workers call this once (it is a valid process-pool initializer); use :func:`torch_threads` to
    limit a block of code in a process you do not own.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    return previous


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run a block with torch limited to ``n`` intra-op threads, then restore the previous count."""
    previous = limit_torch_threads(n)
    try:
        yield
    finally:
        limit_torch_threads(previous)


def resample(samples: np.ndarray, orig_sr: int, sr: int) -> np.ndarray:
    """Band-limited resampling of mono float32 audio from ``orig_sr`` to ``sr``."""
    if orig_sr == sr:
        return samples.astype(np.float32, copy=False)
    import torch  # local import: torch is heavy and only needed when rates differ

    with torch.no_grad():
        out = _resampler(int(orig_sr), int(sr))(torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)))
    return out.numpy()


def load_audio(src: AudioSource, sr: int = SAMPLE_RATE, *, name: str | None = None) -> np.ndarray:
    """Read ``src`` as mono float32 at ``sr`` Hz: decode, downmix, resample.

    ``name`` labels byte inputs in error messages (e.g. the dataset row's file name).
    """
    data, orig_sr = read_audio(src, name=name)
    return resample(to_mono(data), orig_sr, sr)


def encode_audio(samples: np.ndarray, sr: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    """Encode (frames,) or (frames, channels) float audio into file bytes (WAV, FLAC, ...).

    Samples are clipped to [-1, 1] first so that integer formats never wrap around.
    """
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def write_flac(path: str | os.PathLike, samples: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write float audio as 16-bit FLAC, atomically (temporary file, then rename)."""
    data = encode_audio(samples, sr, fmt="FLAC", subtype="PCM_16")
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)


def rms(samples: np.ndarray) -> float:
    """Root mean square of the samples (0.0 for empty input)."""
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def apply_gain_db(samples: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale audio by ``gain_db`` decibels."""
    return (samples * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32, copy=False)


def colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise of ``n`` samples with a 1/f^beta spectrum.

    ``color``: ``white`` (beta 0), ``pink`` (1), ``brown`` (2) or ``blue`` (-1).  Shaped in the
    frequency domain, so it costs one FFT pair whatever the colour.
    """
    betas = {"white": 0.0, "pink": 1.0, "brown": 2.0, "blue": -1.0}
    if color not in betas:
        raise ValueError(f"unknown noise colour {color!r}; use one of {sorted(betas)}")
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    # FFT at a power of two, then cut: lengths with large prime factors are many times slower.
    n_fft = 1 << max(1, (n - 1).bit_length())
    spectrum = np.fft.rfft(rng.standard_normal(n_fft))
    freqs = np.arange(spectrum.shape[0], dtype=np.float64)
    freqs[0] = 1.0  # keep DC finite; it is removed below
    spectrum *= freqs ** (-betas[color] / 2.0)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n_fft)[:n]
    level = rms(noise)
    return (noise / level if level > 0 else noise).astype(np.float32)


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add ``noise`` (tiled or cut to length) to ``signal`` at ``snr_db`` dB relative to its RMS."""
    if signal.size == 0:
        return signal.astype(np.float32, copy=False)
    if noise.size == 0:
        raise ValueError("noise is empty")
    if noise.shape[0] < signal.shape[0]:
        noise = np.resize(noise, signal.shape)
    noise = noise[: signal.shape[0]]
    sig_rms, noise_rms = rms(signal), rms(noise)
    if sig_rms == 0.0 or noise_rms == 0.0:
        return signal.astype(np.float32, copy=True)
    scale = sig_rms / (noise_rms * 10.0 ** (snr_db / 20.0))
    return (signal + noise * scale).astype(np.float32)
