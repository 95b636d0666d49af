"""Silero VAD: a neural speech/non-speech probability for every 32 ms of a 16 kHz recording.

The energy detector (`speech_calm.speech.segment`) calls anything loud speech, so steady noise, music or a fan
pass as speech and m_A and the anchor make up text for them. Silero VAD (the `silero-vad` package, MIT, its
weights shipped inside the wheel: no download) scores each 512-sample chunk for speech instead. It is loaded
lazily, once per process; where it cannot be imported, callers fall back to the energy detector with one
warning (`available`).

    probs = speech_probabilities(wave)   # (ceil(N / 512),) float32 in [0, 1], one per CHUNK_SECONDS
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np

from speech_calm.speech.audio import SAMPLE_RATE

__all__ = ["CHUNK_SAMPLES", "CHUNK_SECONDS", "available", "speech_probabilities"]

CHUNK_SAMPLES = 512  # Silero's window at 16 kHz
CHUNK_SECONDS = CHUNK_SAMPLES / SAMPLE_RATE  # 32 ms

_lock = threading.Lock()
_model: Any = None
_failed: str | None = None  # why Silero could not be loaded (then the warning was given once)


def _load() -> Any:
    """The Silero model, loaded on first use; None (with one warning per process) when it cannot be."""
    global _model, _failed
    with _lock:
        if _model is not None or _failed is not None:
            return _model
        import torch

        threads = torch.get_num_threads()  # silero_vad's model module calls torch.set_num_threads(1) on import
        try:
            with warnings.catch_warnings():  # its loader's DeprecationWarnings (importlib path, torch.jit.load)
                warnings.simplefilter("ignore", DeprecationWarning)
                from silero_vad import load_silero_vad

                _model = load_silero_vad()
        except Exception as e:  # noqa: BLE001 - any import or load failure means: use the energy detector
            _failed = f"{type(e).__name__}: {e}"
            warnings.warn(f"Silero VAD is unavailable ({_failed}); segmenting with the energy detector instead "
                          f"(pip install silero-vad)", RuntimeWarning, stacklevel=3)
        finally:
            torch.set_num_threads(threads)
        return _model


def available() -> bool:
    """Whether Silero VAD can be used here (loads it on the first call; warns once when it cannot)."""
    return _load() is not None


def speech_probabilities(wave: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Silero's speech probability of each 32 ms chunk of mono `wave` (N,) at 16 kHz.

    Returns (ceil(N / CHUNK_SAMPLES),) float32 (the last chunk zero-padded). Raises RuntimeError when Silero is
    unavailable (check `available()` first) and ValueError for another sample rate.
    """
    if sr != SAMPLE_RATE:
        raise ValueError(f"Silero VAD reads {SAMPLE_RATE} Hz audio here, got {sr} Hz; resample first")
    model = _load()
    if model is None:
        raise RuntimeError(f"Silero VAD is unavailable ({_failed})")
    if len(wave) == 0:
        return np.zeros(0, np.float32)
    import torch

    with _lock, torch.no_grad():  # the model keeps a recurrent state between chunks: one recording at a time
        model.reset_states()
        probs = model.audio_forward(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), SAMPLE_RATE)
        model.reset_states()
    return probs.reshape(-1).numpy().astype(np.float32)
