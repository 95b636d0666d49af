"""speech_calm: CALM (Composition to Augment Language Models) for Indian-language speech and text.

    import speech_calm
    model = speech_calm.load("runs/telugu")               # a run directory from python -m speech_calm.train
    result = model.transcribe("call.mp3", task="both")    # {"text", "translation", "segments": [...], ...}

Importing the package is light: torch and transformers load on the first `load` call.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from speech_calm.speech.transcribe import Transcriber

__all__ = ["Transcriber", "load"]


def load(run_dir: str | os.PathLike, device: str = "auto", dtype: str = "auto") -> Transcriber:
    """A trained run directory ready to transcribe and translate audio: see `speech_calm.infer.load`."""
    from speech_calm.infer import load as _load

    return _load(run_dir, device=device, dtype=dtype)


def __getattr__(name: str) -> Any:
    if name == "Transcriber":  # the class, without importing torch at package import
        from speech_calm.speech.transcribe import Transcriber

        return Transcriber
    raise AttributeError(f"module 'speech_calm' has no attribute {name!r}")
