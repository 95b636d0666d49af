"""Segmentation against a known timeline: Silero VAD and the energy detector side by side, clean and noisy.

    python benchmarks/vad_boundaries.py data/vaani/telugu/test.jsonl
    python benchmarks/vad_boundaries.py /tmp/d18/test.jsonl --snr 20 10 5 0 --ctc-model runs/telugu/encoder/model

Clips of a manifest are joined with pauses (`scripts/make_long_audio.py`), so where each clip starts and ends
is known; pink noise is then added over the whole recording at each `--snr` (dB, against the speech's RMS).
Both detectors cut every version with `pad=0` (their own boundaries, not the context kept around them), and
each clip is compared with the detected segments that overlap it:

- boundary error (ms): |first overlapping segment's start - clip start| and |last one's end - clip end|, over
  clips found (mean and median of both ends together);
- missed: clips no segment overlaps; false: segments that overlap no clip; merged: segments spanning two or
  more clips (a pause not found).

With `--ctc-model` (an m_A directory with a CTC head) it also prints the evidence behind the no-speech gate on
the manifest's clips and on non-speech (`speech_calm.speech.speech_presence`): the table its thresholds were
chosen from, on the dev split.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

from speech_calm.speech.audio import SAMPLE_RATE, load_audio
from speech_calm.speech.data import read_manifest
from speech_calm.speech.segment import DETECTORS, SegmentOptions, find_segments

SR = SAMPLE_RATE
REPO = Path(__file__).resolve().parents[1]


def _make_long_audio():  # noqa: ANN202 - the script's function, loaded from its file (scripts/ is no package)
    spec = importlib.util.spec_from_file_location("make_long_audio", REPO / "scripts" / "make_long_audio.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.make_long_audio


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS pink (1/f power) noise, (n,) float64: most of its energy where speech has its own."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    x = np.fft.irfft(spectrum / np.sqrt(np.arange(len(spectrum)) + 1), n)
    return x / x.std()


def score(segments: list[tuple[float, float]], clips: list[tuple[float, float]]) -> dict[str, float]:
    """Boundary errors (ms), missed, false and merged segments of `segments` against `clips` (seconds)."""
    errors, missed = [], 0
    for a, b in clips:
        hit = [s for s in segments if s[0] < b and s[1] > a]
        if not hit:
            missed += 1
            continue
        errors += [abs(hit[0][0] - a) * 1000, abs(hit[-1][1] - b) * 1000]
    false = sum(not any(s[0] < b and s[1] > a for a, b in clips) for s in segments)
    merged = sum(sum(s[0] < b and s[1] > a for a, b in clips) > 1 for s in segments)
    return {"mean": float(np.mean(errors)) if errors else float("nan"),
            "median": float(np.median(errors)) if errors else float("nan"),
            "missed": missed, "false": false, "merged": merged, "segments": len(segments)}


def boundaries(manifest: str, seconds: float, pause: float, snrs: list[float], seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ref = _make_long_audio()(manifest, Path(tmp) / "joined.flac", seconds=seconds, pause=pause, seed=seed)
        clean = load_audio(Path(tmp) / "joined.flac").astype(np.float64)
    clips = [(s["start"], s["end"]) for s in ref["segments"]]
    speech = np.concatenate([clean[int(a * SR) : int(b * SR)] for a, b in clips])
    rms = float(np.sqrt(np.mean(speech**2)))
    noise = pink_noise(len(clean), np.random.default_rng(seed + 1))
    print(f"{manifest}: {len(clips)} clips joined with {pause:g} s pauses, {len(clean) / SR:.1f} s; pink noise "
          f"added at each SNR; segments cut with pad=0")
    print(f"{'SNR dB':>6} {'detector':>8} {'mean ms':>8} {'median ms':>9} {'missed':>6} {'false':>5} {'merged':>6} "
          f"{'segments':>8}")
    for snr in snrs:
        wave = clean if snr == float("inf") else clean + noise * rms / 10 ** (snr / 20)
        wave = (wave / max(1.0, float(np.abs(wave).max()))).astype(np.float32)  # no clipping
        for detector in DETECTORS:
            segs = find_segments(wave, SR, SegmentOptions(detector=detector, pad=0.0))
            r = score([(s.start_seconds, s.end_seconds) for s in segs], clips)
            label = "clean" if snr == float("inf") else f"{snr:g}"
            print(f"{label:>6} {detector:>8} {r['mean']:>8.0f} {r['median']:>9.0f} {r['missed']:>6} {r['false']:>5} "
                  f"{r['merged']:>6} {r['segments']:>8}")


def presence(manifest: str, ctc_dir: str, seed: int) -> None:
    """The no-speech gate's evidence on the manifest's clips (clean and in pink noise) and on non-speech."""
    import torch

    from speech_calm.speech import vad
    from speech_calm.speech.data import pad_waves
    from speech_calm.speech.speech_presence import ctc_evidence, no_speech_probability
    from speech_calm.towers.ctc import load_ctc_model

    model = load_ctc_model(ctc_dir)
    rng = np.random.default_rng(seed)
    t = lambda s: np.arange(int(s * SR)) / SR  # noqa: E731
    quiet = lambda: 1e-3 * rng.standard_normal(int(0.2 * SR))  # noqa: E731 - a segment's 0.2 s of context
    clips = [load_audio(u.audio).astype(np.float64) for u in read_manifest(manifest)]
    noisy = lambda w, snr: w + pink_noise(len(w), rng) * w.std() / 10 ** (snr / 20)  # noqa: E731
    lengths = [2, 3, 5, 8, 10] * 2
    sets = {
        "speech": [np.concatenate([quiet(), w, quiet()]) for w in clips],
        "speech, SNR 10": [np.concatenate([quiet(), noisy(w, 10), quiet()]) for w in clips],
        "speech, SNR 0": [np.concatenate([quiet(), noisy(w, 0), quiet()]) for w in clips],
        "white noise": [0.05 * rng.standard_normal(int(s * SR)) for s in lengths],
        "pink noise": [0.05 * pink_noise(int(s * SR), rng) for s in lengths],
        "chords": [0.1 * sum(np.sin(2 * np.pi * 220 * 2 ** (k / 12) * r * t(s)) for r in (1, 1.25, 1.5)) / 2
                   for k, s in enumerate(lengths)],
        "hum 50 Hz": [0.05 * sum(np.sin(2 * np.pi * 50 * h * t(s)) / h for h in range(1, 8)) for s in lengths],
    }
    print(f"\nno-speech evidence ({ctc_dir}); min-max (median) per set")
    print(f"{'set':>15} {'n':>3} {'Silero speech':>18} {'m_A chars/s':>18} {'confidence':>20} {'no_speech_prob':>18}")
    for name, waves in sets.items():
        rows = []
        for w in waves:
            w = w.astype(np.float32)
            v = float(vad.speech_probabilities(w).mean())
            audio, lens = pad_waves([w])
            with torch.no_grad():
                logits, frames = model.ctc_logits(audio, lens)
            rate, conf = ctc_evidence(logits[0, : int(frames[0])].float().log_softmax(-1), len(w) / SR)
            rows.append((v, rate, np.nan if conf is None else conf, no_speech_probability(v, rate)))
        r = np.array(rows)
        cell = lambda c: f"{np.nanmin(r[:, c]):.2f}-{np.nanmax(r[:, c]):.2f} ({np.nanmedian(r[:, c]):.2f})"  # noqa: E731
        print(f"{name:>15} {len(rows):>3} {cell(0):>18} {cell(1):>18} {cell(2):>20} {cell(3):>18}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Segment boundaries of Silero VAD and the energy detector.")
    p.add_argument("manifest", help="a JSONL manifest of speech clips, e.g. data/vaani/telugu/test.jsonl")
    p.add_argument("--seconds", type=float, default=120.0, help="join clips until this much audio (default 120)")
    p.add_argument("--pause", type=float, default=1.0, help="seconds between clips (default 1.0)")
    p.add_argument("--snr", type=float, nargs="+", default=[float("inf"), 20.0, 10.0, 5.0, 0.0],
                   help="SNRs in dB of added pink noise (inf: clean; default: inf 20 10 5 0)")
    p.add_argument("--ctc-model", default=None, help="also print the no-speech evidence with this m_A")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not Path(args.manifest).is_file():
        print(f"error: {args.manifest}: no such manifest", file=sys.stderr)
        return 2
    boundaries(args.manifest, args.seconds, args.pause, args.snr, args.seed)
    if args.ctc_model:
        presence(args.manifest, args.ctc_model, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
