"""speech_calm.speech.segment: pauses split long audio, nothing but silence and clicks is dropped, timestamps cover speech."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speech_calm.speech.audio import SAMPLE_RATE, load_audio
from speech_calm.speech.segment import (
    Segment,
    SegmentOptions,
    SilentAudioError,
    find_segments,
    frame_levels,
)
from tests import tiny
from tests.trained import long_recording

SR = SAMPLE_RATE

ENERGY = SegmentOptions(detector="energy")  # the signals below are noise shaped like speech: Silero would drop them


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise with a syllable-rate (4 Hz) loudness wobble that never drops to silence: speech without pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.1 * (1.2 + np.sin(2 * np.pi * 4 * t)) * rng.standard_normal(len(t))).astype(np.float32)


def quiet(seconds: float, seed: int = 1) -> np.ndarray:
    return (1e-3 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def check_layout(segments: list[Segment], n: int, opts: SegmentOptions) -> None:
    """Sorted, non-overlapping, inside the recording, none longer than max_segment."""
    assert segments
    for a, b in zip(segments, segments[1:]):
        assert a.end <= b.start
    assert segments[0].start >= 0 and segments[-1].end <= n
    assert all(0 < s.duration <= opts.max_segment + 1e-9 for s in segments)


def covers(segments: list[Segment], start: float, end: float, slack: float = 0.02) -> bool:
    return any(s.start_seconds <= start + slack and s.end_seconds >= end - slack for s in segments)


def test_levels_have_one_value_per_hop() -> None:
    wave = np.concatenate([np.zeros(SR, np.float32), 0.5 * np.ones(SR + 37, np.float32)])
    levels = frame_levels(wave)
    assert levels.shape == (201,)
    assert levels[10] < -100 and abs(levels[150] - 20 * np.log10(0.5)) < 0.1


@pytest.mark.parametrize("detector", ["silero", "energy"])
@pytest.mark.parametrize("wave", [np.zeros(5 * SR, np.float32), quiet(5) * 1e-2])
def test_silence_is_an_error_that_names_the_file(wave: np.ndarray, detector: str) -> None:
    with pytest.raises(SilentAudioError, match="clip.wav: audio is silent"):
        find_segments(wave, options=SegmentOptions(detector=detector), name="clip.wav")


def test_pauses_split_short_gaps_do_not() -> None:
    # speech 2 s | pause 1 s | speech 1.5 s with a 0.2 s gap inside | pause 3 s | speech 1 s
    parts = [quiet(0.5), speechlike(2.0), quiet(1.0), speechlike(0.7, 2), quiet(0.2), speechlike(0.6, 3),
             quiet(3.0), speechlike(1.0, 4), quiet(0.5)]
    wave = np.concatenate(parts)
    opts = ENERGY
    segments = find_segments(wave, options=opts)
    check_layout(segments, len(wave), opts)
    assert len(segments) == 3
    for seg, (start, end) in zip(segments, [(0.5, 2.5), (3.5, 5.0), (8.0, 9.0)]):
        assert covers([seg], start, end)
        # padding stays near the speech: the pauses are left out
        assert seg.start_seconds >= start - opts.pad - 0.05 and seg.end_seconds <= end + opts.pad + 0.05


def test_continuous_speech_is_cut_by_length_and_nothing_is_dropped() -> None:
    wave = speechlike(65.0)
    opts = SegmentOptions(detector="energy", max_segment=20.0)
    segments = find_segments(wave, options=opts)
    check_layout(segments, len(wave), opts)
    assert len(segments) >= 4
    assert sum(s.end - s.start for s in segments) >= len(wave) - 2 * opts.pad * SR  # only the ends may trim


def test_an_isolated_click_is_not_a_segment() -> None:
    click = np.zeros(int(0.05 * SR), np.float32)
    click[::7] = 0.8
    wave = np.concatenate([quiet(1.0), click, quiet(2.0), speechlike(1.5), quiet(1.0)])
    segments = find_segments(wave, options=ENERGY)
    assert len(segments) == 1 and covers(segments, 3.05, 4.55)


def test_three_minute_recording_timestamps_are_monotonic_and_cover_the_speech(tmp_path: Path) -> None:
    tiny.write_corpus(str(tmp_path / "data"), n_train=12, n_dev=1, n_test=1)
    spans = long_recording(tmp_path, tmp_path / "long.flac", seconds=180.0)
    wave = load_audio(tmp_path / "long.flac")
    assert len(wave) / SR >= 180.0
    opts = ENERGY  # the tiny corpus "speaks" in tones
    segments = find_segments(wave, options=opts)
    check_layout(segments, len(wave), opts)
    for start, end in spans:
        assert covers(segments, start, end), (start, end)
    assert len(segments) == len(spans)  # every pause (>= 0.6 s) splits, no clip is split
    assert sum(s.duration for s in segments) < 0.6 * len(wave) / SR  # the pauses are left out


@pytest.mark.parametrize("kwargs, message", [
    ({"max_segment": 0}, "max_segment must be > 0"),
    ({"pad": -1}, "pad must be >= 0"),
    ({"max_segment": 0.3, "pad": 0.2}, "leaves no room"),
    ({"threshold": 1.5}, "threshold must be between 0 and 1"),
    ({"detector": "webrtc"}, "detector must be one of silero, energy"),
    ({"vad_threshold": 0.1}, "vad_threshold must be between 0.15 and 1"),
])
def test_bad_options_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SegmentOptions(**kwargs)
