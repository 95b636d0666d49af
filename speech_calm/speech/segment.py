"""Long-form audio: find the speech and cut a recording into segments the model can decode.

The composed model learnt from utterance-length clips (seconds, not minutes), so a long recording is cut
at its pauses, never at a fixed 30 s window that could fall mid-word or drop the tail:

1. every 10 ms hop is marked speech or not, by one of two detectors (`SegmentOptions.detector`):
   - "silero" (default): Silero VAD's speech probability (`speech_calm.speech.vad`, per 32 ms) with
     hysteresis: speech starts where it reaches `vad_threshold` and goes on until it drops below
     `vad_threshold - VAD_HYSTERESIS`. Noise, music and hum are not speech, however loud. Where Silero cannot
     be imported, the energy detector is used instead (one warning per process);
   - "energy": a level in dBFS per hop (RMS over a 30 ms window); a hop is speech when its level is above a
     threshold placed between the recording's noise floor (10th percentile of the levels) and its speech
     level (99th percentile), so it adapts to quiet and noisy files, but any loud sound counts;
2. pauses shorter than `min_silence` are bridged (a stop consonant is not a pause), speech bursts shorter
   than `min_speech` that stand alone are dropped (clicks), and speech that runs on for more than
   `max_segment` seconds without a pause is cut at its quietest moment;
3. every segment keeps `pad` seconds of context on each side, without overlapping its neighbours.

With the energy detector only silence and isolated clicks are left out; a recording whose levels show no
pauses at all (continuous speech or steady noise) is kept whole and only cut by length. With Silero, a
recording in which it hears no speech at all gives no segments. Either way a recording with no sound above
`silence_db` raises `SilentAudioError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from speech_calm.speech import vad
from speech_calm.speech.audio import SAMPLE_RATE, AudioError

__all__ = ["DETECTORS", "HOP_SECONDS", "Segment", "SegmentOptions", "SilentAudioError", "find_segments",
           "frame_levels", "speech_runs"]

DETECTORS = ("silero", "energy")

HOP_SECONDS = 0.01  # the detector's time resolution

WINDOW_HOPS = 3  # RMS window: 30 ms, centred on each hop

LEVEL_FLOOR_DB = -120.0  # digital silence reads as this instead of -inf

VAD_HYSTERESIS = 0.15  # speech ends below vad_threshold minus this (Silero's own default gap)


class SilentAudioError(AudioError):
    """A recording with no sound above the silence level: there is nothing to transcribe."""


@dataclass(frozen=True)
class SegmentOptions:
    """How long audio is cut (seconds and dB). The defaults suit utterance-trained models such as ours."""

    detector: str = "silero"  # "silero" (falls back to "energy" where Silero cannot be imported) or "energy"
    max_segment: float = 20.0  # longest segment (padding included); longer speech is cut at its quietest point
    min_silence: float = 0.5  # pauses at least this long split segments; shorter ones are bridged
    min_speech: float = 0.2  # a burst of sound shorter than this between pauses is a click, not speech
    pad: float = 0.2  # context kept on each side of the detected speech
    silence_db: float = -60.0  # dBFS: hops below this are always silence; a file below it throughout is silent
    threshold: float = 0.3  # speech threshold as a fraction of the way from noise floor to speech level
    min_dynamic_range_db: float = 6.0  # speech level this close to the floor: no pauses to find, keep all
    vad_threshold: float = 0.5  # Silero: speech probability at which speech starts (Silero's default)

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"segmentation: detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}")
        if not VAD_HYSTERESIS < self.vad_threshold < 1:
            raise ValueError(f"segmentation: vad_threshold must be between {VAD_HYSTERESIS} and 1, "
                             f"got {self.vad_threshold}")
        for name in ("max_segment", "min_silence", "min_speech"):
            if getattr(self, name) <= 0:
                raise ValueError(f"segmentation: {name} must be > 0 seconds, got {getattr(self, name)}")
        if self.pad < 0:
            raise ValueError(f"segmentation: pad must be >= 0 seconds, got {self.pad}")
        if self.max_segment < 2 * self.pad + 4 * HOP_SECONDS:
            raise ValueError(
                f"segmentation: max_segment={self.max_segment} s leaves no room for speech between two pads of "
                f"{self.pad} s; use a larger max_segment or a smaller pad"
            )
        if not 0 < self.threshold < 1:
            raise ValueError(f"segmentation: threshold must be between 0 and 1, got {self.threshold}")


@dataclass(frozen=True)
class Segment:
    """Samples [start, end) of a recording at `sample_rate`; `speech_prob`: Silero's mean speech probability
    over it (None when the energy detector cut it)."""

    start: int
    end: int
    sample_rate: int = SAMPLE_RATE
    speech_prob: float | None = None

    @property
    def start_seconds(self) -> float:
        return self.start / self.sample_rate

    @property
    def end_seconds(self) -> float:
        return self.end / self.sample_rate

    @property
    def duration(self) -> float:
        return (self.end - self.start) / self.sample_rate


def frame_levels(wave: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Level in dBFS of each 10 ms hop of mono `wave` (N,): RMS over a 30 ms window centred on the hop.

    Returns (ceil(N / hop),) float64; the last, partial hop is zero-padded.
    """
    hop = max(1, round(HOP_SECONDS * sr))
    n_hops = -(-len(wave) // hop)
    x = np.zeros(n_hops * hop, dtype=np.float32)
    x[: len(wave)] = wave
    x = x.reshape(n_hops, hop)
    # einsum: per-hop sum of squares without a float64 copy of the whole recording (an hour is 58 M samples)
    power = np.einsum("ij,ij->i", x, x).astype(np.float64) / hop  # (n_hops,)
    if n_hops >= WINDOW_HOPS:
        power = np.convolve(power, np.ones(WINDOW_HOPS) / WINDOW_HOPS, mode="same")
    return np.maximum(10.0 * np.log10(np.maximum(power, 1e-30)), LEVEL_FLOOR_DB)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs of a 1-D bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _energy_mask(levels: np.ndarray, opts: SegmentOptions) -> np.ndarray | None:
    """Energy detector: (n_hops,) bool, True where a hop is loud enough to be speech; None when no pause stands
    out from the rest (keep everything)."""
    floor, loud = np.percentile(levels, 10), np.percentile(levels, 99)
    if loud - floor < opts.min_dynamic_range_db:
        return None
    return levels > max(floor + opts.threshold * (loud - floor), opts.silence_db)


def _hop_probabilities(probs: np.ndarray, n_hops: int, sr: int) -> np.ndarray:
    """Silero's per-chunk probabilities (32 ms) read off at each 10 ms hop's centre: (n_hops,)."""
    hop = max(1, round(HOP_SECONDS * sr))
    centre = np.arange(n_hops) * hop + hop // 2
    return probs[np.minimum(centre // vad.CHUNK_SAMPLES, len(probs) - 1)]


def _vad_mask(hop_probs: np.ndarray, opts: SegmentOptions) -> np.ndarray:
    """Silero detector with hysteresis: (n_hops,) bool. A hop at or above `vad_threshold` starts (or continues)
    speech, one below `vad_threshold - VAD_HYSTERESIS` ends it, one in between keeps the state before it."""
    event = np.where(hop_probs >= opts.vad_threshold, 1, np.where(
        hop_probs < opts.vad_threshold - VAD_HYSTERESIS, 0, -1))
    decided = np.where(event >= 0, np.arange(len(event)), -1)
    last = np.maximum.accumulate(decided)  # index of the last hop that decided the state (-1: none yet)
    return np.where(last >= 0, event[np.maximum(last, 0)], 0).astype(bool)


def speech_runs(wave: np.ndarray, sr: int, opts: SegmentOptions, levels: np.ndarray | None = None,
                label: str = "audio") -> tuple[list[tuple[int, int]], np.ndarray | None]:
    """Speech as [start, end) ranges of 10 ms hops, before length limits and padding, and Silero's probability
    per hop (None with the energy detector, or where Silero is unavailable and energy was used instead).

    Raises `SilentAudioError` (naming `label`) when there is no sound above `opts.silence_db`.
    """
    if levels is None:
        levels = frame_levels(wave, sr)
    loud = np.percentile(levels, 99)
    if loud < opts.silence_db:
        raise SilentAudioError(
            f"{label}: audio is silent (speech level {loud:.0f} dBFS, below {opts.silence_db:.0f} dBFS); "
            f"nothing to transcribe"
        )
    hop_probs = None
    if opts.detector == "silero" and vad.available():
        hop_probs = _hop_probabilities(vad.speech_probabilities(wave, sr), len(levels), sr)
        mask: np.ndarray | None = _vad_mask(hop_probs, opts)
    else:
        mask = _energy_mask(levels, opts)
    if mask is None:
        return [(0, len(levels))], hop_probs  # no pause stands out from the rest: keep everything, cut by length
    return _bridge(_runs(mask), opts, keep_one=hop_probs is None), hop_probs


def _bridge(runs: list[tuple[int, int]], opts: SegmentOptions, keep_one: bool) -> list[tuple[int, int]]:
    """Runs with pauses under `min_silence` bridged and lone bursts under `min_speech` dropped. keep_one: when
    nothing is left, keep the longest burst (the energy detector: too little to judge, let the model hear it);
    Silero's verdict of no speech is kept as no runs."""
    gap = round(opts.min_silence / HOP_SECONDS)
    bridged: list[tuple[int, int]] = []
    for start, end in runs:
        if bridged and start - bridged[-1][1] < gap:
            bridged[-1] = (bridged[-1][0], end)  # a short pause inside speech
        else:
            bridged.append((start, end))
    kept = [(s, e) for s, e in bridged if e - s >= round(opts.min_speech / HOP_SECONDS)]
    if not kept and bridged and keep_one:  # only short bursts: too little to judge, let the model hear one
        kept = [max(bridged, key=lambda r: r[1] - r[0])]
    return kept


def _cut_long(runs: list[tuple[int, int]], levels: np.ndarray, max_hops: int) -> list[tuple[int, int]]:
    """Cut runs longer than `max_hops` at their quietest point (0.2 s smoothed level) in the second half of
    each `max_hops` window, so pieces are neither tiny nor over the limit."""
    smooth = np.convolve(levels, np.ones(20) / 20, mode="same") if len(levels) >= 20 else levels
    out = []
    for start, end in runs:
        while end - start > max_hops:
            lo, hi = start + max_hops // 2, start + max_hops
            cut = lo + int(np.argmin(smooth[lo:hi]))
            out.append((start, cut))
            start = cut
        out.append((start, end))
    return out


def find_segments(
    wave: np.ndarray, sr: int = SAMPLE_RATE, options: SegmentOptions | None = None, name: str = "audio"
) -> list[Segment]:
    """Segments of mono `wave` (N,) at `sr` Hz: sorted, non-overlapping, each at most `max_segment` long; none
    when Silero hears no speech. With Silero each carries its mean speech probability (`speech_prob`).

    Raises `SilentAudioError` (naming `name`) when there is no sound above `options.silence_db`.
    """
    opts = options or SegmentOptions()
    if len(wave) == 0:
        raise AudioError(f"{name}: audio has no samples")
    levels = frame_levels(wave, sr)
    hop = max(1, round(HOP_SECONDS * sr))
    pad_hops = round(opts.pad / HOP_SECONDS)
    max_hops = max(1, int((opts.max_segment - 2 * opts.pad) / HOP_SECONDS))
    found, hop_probs = speech_runs(wave, sr, opts, levels, name)
    runs = _cut_long(found, levels, max_hops)
    n = len(wave)
    segments = []
    for i, (start, end) in enumerate(runs):
        # pad into the neighbouring silence, but never past the middle of the gap to the next segment
        left = start - pad_hops if i == 0 else max(start - pad_hops, (runs[i - 1][1] + start) // 2)
        right = end + pad_hops if i == len(runs) - 1 else min(end + pad_hops, (end + runs[i + 1][0]) // 2)
        a, b = max(0, left * hop), min(n, right * hop)
        if b > a:
            prob = None if hop_probs is None else round(float(hop_probs[a // hop : -(-b // hop)].mean()), 4)
            segments.append(Segment(a, b, sr, prob))
    return segments
