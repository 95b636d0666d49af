"""Shared fixtures of the inference and evaluation tests: one tiny trained run (trained once per session, a
few steps of each stage: the tests need a real run directory, not a good model) and long test recordings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speech_calm.speech.audio import SAMPLE_RATE, load_audio, write_flac
from speech_calm.speech.segment import SegmentOptions
from speech_calm.speech.speech_presence import SpeechGate
from speech_calm.training.loop import run
from speech_calm.training.recipe import load_recipe
from tests.runs import make_workspace, write_recipe

# The tiny corpus "speaks" in tones and its m_A trains a few steps: Silero hears no speech in it and m_A no
# characters. Tests of the plumbing around the model (formats, batching, long files, pinned outputs) therefore
# cut by energy and keep every segment's text; tests/speech/test_speech_presence.py tests the gate itself.
TONES = {"segmentation": SegmentOptions(detector="energy"), "gate": SpeechGate(no_speech_threshold=1.0)}
TONES_CLI = ["--vad", "energy", "--no-speech-threshold", "1"]  # the same for python -m speech_calm.infer

_RUNS: dict[str, Path] = {}
FEW_STEPS = {"max_steps": 4, "batch_size": 8, "eval_every": 100, "eval_items": 2, "save_every": 100, "log_every": 2,
             "optim": {"lr": 1e-2, "warmup_steps": 1}}


def trained_run(factory: pytest.TempPathFactory) -> Path:
    """A workspace (corpus in data/, tiny anchor) with a run directory `run/` trained for a few steps."""
    key = str(factory.getbasetemp())
    if key not in _RUNS:
        ws = make_workspace(factory.mktemp("trained"))
        encoder = {"model": {"d_model": 32, "num_heads": 4, "ffn_dim": 64, "num_layers": 2,
                             "subsampling_channels": 8, "depthwise_kernel_size": 3, "dropout": 0.0,
                             "freq_masks": 0, "time_masks": 0},
                   "train": FEW_STEPS}
        compose = {"anchor": {"source": str(ws / "anchor")}, "bridge": {"every": 1, "frame_stack": 2},
                   "decoding": {"max_new_tokens": 12}, "train": FEW_STEPS}
        run(load_recipe(write_recipe(ws, "run", encoder=encoder, compose=compose)))
        _RUNS[key] = ws
    return _RUNS[key]


def clips(ws: Path, split: str = "test") -> list[dict]:
    """Manifest rows of the tiny corpus, audio paths made absolute."""
    rows = [json.loads(x) for x in (ws / "data" / f"{split}.jsonl").read_text().splitlines()]
    return [{**r, "audio": str(ws / "data" / r["audio"])} for r in rows]


def long_recording(ws: Path, path: Path, seconds: float = 180.0, seed: int = 0) -> list[tuple[float, float]]:
    """Corpus clips joined with pauses of 0.6-2 s of faint noise (one of 10 s) until `seconds`; written as FLAC
    to `path`. Returns the (start, end) seconds of every clip in it."""
    rng = np.random.default_rng(seed)
    waves = [load_audio(r["audio"]) for r in clips(ws, "train")]
    pieces, spans, t = [], [], 0
    while t < seconds * SAMPLE_RATE:
        pause = 10.0 if len(spans) == 20 else rng.uniform(0.6, 2.0)
        pieces.append((rng.standard_normal(int(pause * SAMPLE_RATE)) * 1e-3).astype(np.float32))  # -60 dBFS
        t += len(pieces[-1])
        wave = waves[len(spans) % len(waves)]
        spans.append((t / SAMPLE_RATE, (t + len(wave)) / SAMPLE_RATE))
        pieces.append(wave)
        t += len(wave)
    write_flac(path, np.concatenate(pieces))
    return spans


# the demo's compose settings (recipes/telugu.yaml) at a tiny size: CTC-compressed memory, offset-biased bridges,
# character targets over the script's vocabulary, chained translation
DEMO_COMPOSE = {"compress": "ctc", "char_targets": True, "script_vocab": True, "chain_translation": True,
                "bridge": {"every": 1, "frame_stack": 1, "offset_bias": 4}, "decoding": {"max_new_tokens": 12},
                "train": {**FEW_STEPS, "max_steps": 3}}


def baseline_runs(factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Beside `trained_run`'s workspace, runs on its m_A (trained once, as scripts/results.sh does) with the
    demo's compose settings, a few steps each: CALM at seeds 0 and 1, the prefix projector, CALM trained on
    transcripts only (zero-shot translation), and the cascade's LoRA. {name: run directory; "ws": workspace}."""
    ws = trained_run(factory)
    key = f"{factory.getbasetemp()}:baselines"
    if key not in _RUNS:
        m_a = {"source": str(ws / "run" / "encoder" / "model")}
        runs = {"calm_s0": ({}, 0), "calm_s1": ({}, 1), "prefix": ({"bridge": {**DEMO_COMPOSE["bridge"], "type": "prefix"}}, 0),
                "zero_shot": ({"tasks": ["transcribe"]}, 0)}
        for name, (extra, seed) in runs.items():
            run(load_recipe(write_recipe(ws, name, stages=["compose"], seed=seed,
                                         compose={**DEMO_COMPOSE, "anchor": {"source": str(ws / "anchor")},
                                                  "tower": m_a, **extra})))
        run(load_recipe(write_recipe(ws, "cascade", stages=["cascade"], compose={
            **DEMO_COMPOSE, "anchor": {"source": str(ws / "anchor")}, "tower": m_a},
            cascade={"shots": 2, "max_new_tokens": 6, "train": {**FEW_STEPS, "max_steps": 3}})))
        _RUNS[key] = ws
    return {"ws": ws, **{name: ws / name for name in ("calm_s0", "calm_s1", "prefix", "zero_shot", "cascade")}}
