"""Join clips of a manifest into one long recording with pauses between them (a held-out long-form test).

    python scripts/make_long_audio.py data/vaani/telugu/test.jsonl --out runs/telugu/demo/long_test.flac

Clips are taken in manifest order until `--seconds` of audio are reached and joined with `--pause` seconds of
faint noise between them (a real recording's pauses are never digital silence). Beside the FLAC goes
`<name>.ref.srt`: where each clip sits, with its reference transcript and translation, to compare against
what `python -m speech_calm.infer` makes of the whole recording. Both files are written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from speech_calm.speech.audio import SAMPLE_RATE, load_audio, write_flac
from speech_calm.speech.data import read_manifest
from speech_calm.speech.formats import render, write_text


def make_long_audio(manifest: str | Path, out: str | Path, seconds: float = 120.0, pause: float = 1.0,
                    noise_db: float = -65.0, seed: int = 0) -> dict:
    """Write the joined recording to `out` and its reference subtitles beside it; returns the reference as an
    infer-style result (`{"duration", "text", "translation", "segments"}`)."""
    utts = read_manifest(manifest)
    rng = np.random.default_rng(seed)
    gap = int(pause * SAMPLE_RATE)
    noise_rms = 10 ** (noise_db / 20)
    pieces, segments, t = [], [], 0
    for utt in utts:
        if t / SAMPLE_RATE >= seconds:
            break
        wave = load_audio(utt.audio, name=utt.id)
        pieces += [rng.standard_normal(gap).astype(np.float32) * noise_rms, wave]
        t += gap
        segments.append({"start": t / SAMPLE_RATE, "end": (t + len(wave)) / SAMPLE_RATE, "text": utt.text,
                         "translation": utt.translation})
        t += len(wave)
    if not segments:
        raise ValueError(f"{manifest} has no utterances to join")
    pieces.append(rng.standard_normal(gap).astype(np.float32) * noise_rms)
    audio = np.concatenate(pieces)
    out = Path(out)
    write_flac(out, audio)
    reference = {"duration": len(audio) / SAMPLE_RATE, "text": " ".join(s["text"] for s in segments),
                 "translation": " ".join(s["translation"] or "" for s in segments).strip() or None,
                 "segments": segments}
    write_text(out.with_suffix(".ref.srt"), render(reference, "srt"))
    return reference


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("manifest", help="a JSONL manifest, e.g. data/vaani/telugu/test.jsonl")
    p.add_argument("--out", required=True, help="the recording to write (FLAC)")
    p.add_argument("--seconds", type=float, default=120.0, help="stop adding clips after this much (default 120)")
    p.add_argument("--pause", type=float, default=1.0, help="seconds of faint noise between clips (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the pause noise")
    args = p.parse_args(argv)
    try:
        ref = make_long_audio(args.manifest, args.out, args.seconds, args.pause, seed=args.seed)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: {len(ref['segments'])} clips, {ref['duration']:.1f} s "
          f"(reference: {Path(args.out).with_suffix('.ref.srt')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
