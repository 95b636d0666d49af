"""Offline text-to-speech engines for the synthetic corpus.

* :class:`Espeak` drives libespeak-ng from the ``espeakng-loader`` wheel through ctypes (no system
  package needed).  It has Telugu, Hindi, Kannada, Tamil and Urdu voices; speakers differ by voice
  variant (``te+f3``), pitch, pitch range and rate.  Output is 22,050 Hz mono.
* :class:`Festival` runs Debian's ``festival`` with the ``festvox-te-nsk`` Telugu diphone voice
  (built from real recordings, 16 kHz) when it is installed.  Utterances are synthesised in one
  festival process per batch, because starting festival costs more than speaking a sentence.

libespeak-ng keeps hidden state between utterances, so the synthetic corpus loads a private copy
of it per batch (see :class:`Espeak`) and runs batches in worker processes, never threads.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["Voice", "TTSError", "Espeak", "Festival"]


class TTSError(RuntimeError):
    """Speech synthesis failed; the message says which engine, voice and text."""


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker's voice.

    engine: ``"espeak"`` or ``"festival"``; name: espeak voice (``"te"``) with optional variant
    (``"te+f3"``); pitch and pitch_range on espeak's 0-100 scale (festival: f0 mean in Hz is derived
    from pitch); rate in words per minute (espeak's default is 175).
    """

    engine: str
    name: str
    pitch: int = 50
    pitch_range: int = 50
    rate: int = 175


# espeak_AUDIO_OUTPUT / espeak_PARAMETER / flag values from speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_EE_OK = 0

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class Espeak:
    """ctypes wrapper around the libespeak-ng bundled by ``espeakng-loader``.

    Each instance loads its own private copy of the library.  libespeak-ng keeps state between
    utterances in C statics that no API call resets (e.g. the pitch-flutter phase in the wave
    generator), so the same text can come out a few samples different depending on what was
    spoken before.  A fresh copy per batch (``with Espeak() as engine:``) makes a batch's audio
    depend only on the batch, which keeps the synthetic corpus deterministic.
    """

    _instance: "Espeak | None" = None
    _instance_pid: int | None = None
    _copies = 0

    def __init__(self, seed: int = 0) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise TTSError("espeak-ng is not available: pip install espeakng-loader") from exc
        Espeak._copies += 1
        self._tmpdir = tempfile.mkdtemp(prefix="espeak-")
        self._copy = os.path.join(self._tmpdir, f"libespeak-ng-{os.getpid()}-{Espeak._copies}.so")
        shutil.copyfile(espeakng_loader.get_library_path(), self._copy)
        self._lib = ctypes.CDLL(self._copy)
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        data_path = espeakng_loader.get_data_path().encode()
        self.sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if self.sample_rate <= 0:
            self.close()
            raise TTSError(f"espeak-ng failed to initialise with data at {data_path.decode()}")
        # Breathy variants draw noise from libespeak's generator and from libc's rand(): seed both.
        self._lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        ctypes.CDLL(None).srand(ctypes.c_uint(seed))
        self._chunks: list[np.ndarray] = []
        # Keep a reference to the callback: ctypes would otherwise free it while C still calls it.
        self._callback = _SynthCallback(self._on_audio)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    @classmethod
    def instance(cls) -> "Espeak":
        """A process-wide engine, for callers that do not need reproducible audio."""
        if cls._instance is None or cls._instance_pid != os.getpid():
            cls._instance = cls()
            cls._instance_pid = os.getpid()
        return cls._instance

    def close(self) -> None:
        """Unload this copy of the library and delete it."""
        lib, self._lib = getattr(self, "_lib", None), None
        if lib is not None:
            lib.espeak_Terminate()
            import _ctypes

            _ctypes.dlclose(lib._handle)
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> "Espeak":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_audio(self, wav, num_samples, events) -> int:  # noqa: ANN001 - C callback signature
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0  # 0 = continue synthesis

    def synthesize(self, text: str, voice: Voice) -> tuple[np.ndarray, int]:
        """Speak ``text``; returns (float32 mono samples, sample rate)."""
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.name.encode()) != _EE_OK:
                raise TTSError(f"espeak-ng has no voice {voice.name!r}")
            for param, value in (
                (_PARAM_RATE, voice.rate),
                (_PARAM_PITCH, voice.pitch),
                (_PARAM_RANGE, voice.pitch_range),
                (_PARAM_VOLUME, 100),
            ):
                self._lib.espeak_SetParameter(param, int(value), 0)
            self._chunks = []
            data = text.encode("utf-8") + b"\0"
            err = self._lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
            if err != _EE_OK:
                raise TTSError(f"espeak-ng error {err} speaking {text[:40]!r} with voice {voice.name!r}")
            chunks, self._chunks = self._chunks, []
        if not chunks:
            raise TTSError(f"espeak-ng produced no audio for {text[:40]!r} with voice {voice.name!r}")
        samples = np.concatenate(chunks).astype(np.float32) / 32768.0
        return samples, self.sample_rate


class Festival:
    """Debian festival with its Telugu NSK diphone voice, driven in batches through ``festival -b``."""

    VOICE = "voice_telugu_NSK_diphone"
    sample_rate = 16000  # the NSK diphones are 16 kHz; updated from the files festival writes
    # The voice ships without a usable intonation model; these settings (REFERENCE.md) make it run.
    _SETUP = (
        f"({VOICE})\n"
        "(Parameter.set 'Int_Method Intonation_Tree)\n"
        "(set! int_tone_cart_tree '((NONE)))\n"
    )

    @staticmethod
    def available() -> bool:
        """True when the festival binary and its Telugu voice are installed."""
        if shutil.which("festival") is None:
            return False
        roots = [Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices")]
        return any((root / "telugu" / "telugu_NSK_diphone").is_dir() for root in roots)

    def synthesize_batch(self, texts: list[str], voice: Voice, timeout: float = 300.0) -> list[np.ndarray]:
        """Speak every text with one festival process; returns float32 arrays at :attr:`sample_rate`."""
        f0_mean = 80 + 1.6 * voice.pitch  # espeak-style pitch 0-100 -> 80-240 Hz
        f0_std = 5 + 0.3 * voice.pitch_range
        stretch = 175.0 / max(voice.rate, 60)  # slower rate -> longer durations
        with tempfile.TemporaryDirectory(prefix="festival-") as tmp:
            lines = [
                self._SETUP,
                f"(set! int_simple_params '((f0_mean {f0_mean:.0f}) (f0_std {f0_std:.0f})))\n",
                f"(Parameter.set 'Duration_Stretch {stretch:.3f})\n",
            ]
            outputs = []
            for i, text in enumerate(texts):
                wav = Path(tmp) / f"{i}.wav"
                outputs.append(wav)
                safe = text.replace("\\", " ").replace('"', " ")
                lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{safe}")) "{wav}" \'riff)\n')
            script = Path(tmp) / "batch.scm"
            script.write_text("".join(lines), encoding="utf-8")
            try:
                proc = subprocess.run(
                    ["festival", "-b", str(script)], capture_output=True, timeout=timeout, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise TTSError(f"festival failed to run: {exc}") from exc
            results = []
            for wav, text in zip(outputs, texts):
                if not wav.is_file() or wav.stat().st_size <= 44:
                    err = proc.stderr.decode(errors="replace")[-300:]
                    raise TTSError(f"festival produced no audio for {text[:40]!r}: {err}")
                samples, sr = sf.read(wav, dtype="float32")
                self.sample_rate = int(sr)
                results.append(samples if samples.ndim == 1 else samples.mean(axis=1))
            return results
