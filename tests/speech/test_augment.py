"""Waveform augmentation of m_A's training audio: each transform changes what it should and keeps the rest,
the same (seed, epoch, item) gives the same audio, and the recipe's `encoder.augment` is checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speech_calm.schema import ConfigError
from speech_calm.speech.augment import (
    Augmenter,
    add_noise,
    pitch_shift,
    reverb,
    room_impulse,
    speed,
    telephone,
    vtlp,
)
from speech_calm.speech.config import AugmentConfig
from speech_calm.training.recipe import load_recipe

SR = 16000
F0 = 150.0  # Hz: the test voice's pitch
FORMANT = 1000.0  # Hz: its one formant


def _voice(seconds: float = 1.0, f0: float = F0, formant: float = FORMANT) -> np.ndarray:
    """A vowel-like sound: harmonics of f0 under one formant (a Gaussian envelope), random phases."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(0)
    parts = [np.exp(-(((k * f0) - formant) / 400.0) ** 2) * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6))
             for k in range(1, int(7000 / f0))]
    return (0.1 * np.sum(parts, axis=0)).astype(np.float32)


def _power(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.fft.rfftfreq(len(x), 1 / SR), np.abs(np.fft.rfft(x)) ** 2


def _centroid(x: np.ndarray) -> float:
    f, p = _power(x)
    return float((f * p).sum() / p.sum())


def _on_harmonics(x: np.ndarray, f0: float) -> float:
    """Share of the power within 10 Hz of a multiple of f0 (1.0: every partial sits on f0's harmonics)."""
    f, p = _power(x)
    near = np.abs(f - f0 * np.round(f / f0)) < 10
    return float(p[near].sum() / p.sum())


def _band(x: np.ndarray, lo: float, hi: float) -> float:
    f, p = _power(x)
    return float(p[(f >= lo) & (f < hi)].sum() / p.sum())


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_and_pitch_by_its_factor(factor: float) -> None:
    x = _voice()
    y = speed(x, factor)
    assert len(y) == pytest.approx(len(x) / factor, abs=2)
    assert _on_harmonics(y, F0 * factor) > 0.9 and _on_harmonics(y, F0) < 0.2
    assert speed(x, 1.0) is x


@pytest.mark.parametrize("semitones", [-2.0, 2.0])
def test_pitch_shift_moves_the_harmonics_and_keeps_length_and_formant(semitones: float) -> None:
    x = _voice()
    y = pitch_shift(x, semitones)
    r = 2 ** (semitones / 12)
    assert len(y) == len(x)
    assert _on_harmonics(y, F0 * r) > 0.8 and _on_harmonics(y, F0) < 0.4
    assert _centroid(y) == pytest.approx(_centroid(x), rel=0.08)  # the vocal tract (envelope) stays


@pytest.mark.parametrize("alpha", [0.85, 1.15])
def test_vtlp_moves_the_formant_and_keeps_the_pitch(alpha: float) -> None:
    x = _voice()
    y = vtlp(x, alpha)
    assert len(y) == len(x)
    assert _on_harmonics(y, F0) > 0.9  # the harmonics stay where they were
    # the formant moves with alpha: its strongest harmonic, and the spectral centroid with it
    f, p = _power(y)
    assert abs(f[np.argmax(p)] - alpha * FORMANT) <= F0
    ratio = _centroid(y) / _centroid(x)
    assert 0.5 < (ratio - 1) / (alpha - 1) < 2


def test_reverb_fills_the_silence_after_a_sound_and_keeps_length_and_loudness() -> None:
    rng = np.random.default_rng(1)
    x = np.zeros(SR, dtype=np.float32)
    x[:4000] = _voice(0.25)
    y = reverb(x, room_impulse(0.5, 3.0, rng))
    assert len(y) == len(x)
    assert float(np.sum(x[6000:] ** 2)) == 0.0 < float(np.sum(y[6000:] ** 2)) > 1e-3 * float(np.sum(y ** 2))
    assert np.sqrt(np.mean(y ** 2)) == pytest.approx(np.sqrt(np.mean(x ** 2)), rel=1e-4)
    longer = reverb(x, room_impulse(1.0, 3.0, np.random.default_rng(1)))
    assert np.sum(longer[8000:] ** 2) > np.sum(y[8000:] ** 2)  # a longer RT60 rings longer


@pytest.mark.parametrize("snr_db", [5.0, 20.0])
def test_noise_is_added_at_the_requested_snr(snr_db: float) -> None:
    x = _voice()
    y = add_noise(x, snr_db, "pink", np.random.default_rng(2))
    got = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y - x).astype(np.float64) ** 2))
    assert got == pytest.approx(snr_db, abs=0.1)


def test_telephone_keeps_only_the_phone_band() -> None:
    rng = np.random.default_rng(3)
    x = (0.1 * rng.standard_normal(SR)).astype(np.float32)  # white: power in every band
    y = telephone(x)
    assert len(y) == len(x)
    assert _band(x, 4000, 8001) > 0.4 and _band(y, 4000, 8001) < 1e-3
    assert _band(x, 0, 250) > 0.02 and _band(y, 0, 250) < 1e-3
    assert len(np.unique(np.round(telephone(_voice()) * 1e4))) > 50  # still audio, not a few levels


EVERYTHING = AugmentConfig(speeds=[0.9, 1.1], pitch_prob=1.0, vtlp_prob=1.0, reverb_prob=1.0, noise_prob=1.0,
                           telephone_prob=1.0)


def test_augmentation_is_a_pure_function_of_seed_epoch_and_item() -> None:
    x = _voice()
    aug = Augmenter(EVERYTHING, seed=7)
    a = aug(x, epoch=3, item=11)
    np.testing.assert_array_equal(a, Augmenter(EVERYTHING, seed=7)(x, epoch=3, item=11))
    np.testing.assert_array_equal(a, aug(x, epoch=3, item=11))  # calls in between change nothing
    for other in (aug(x, 4, 11), aug(x, 3, 12), Augmenter(EVERYTHING, seed=8)(x, 3, 11)):
        assert len(other) != len(a) or not np.allclose(other, a)
    assert np.array_equal(x, _voice())  # the input (a cached waveform) is left as it was


def test_one_transform_s_draws_do_not_depend_on_the_others() -> None:
    """Each transform has its own random stream: switching pitch shifts on leaves the utterances that go
    through the phone (no power left above 4 kHz) as they were."""
    x = (0.1 * np.random.default_rng(4).standard_normal(SR)).astype(np.float32)
    phone = AugmentConfig(telephone_prob=0.5)
    phone_and_pitch = AugmentConfig(telephone_prob=0.5, pitch_prob=1.0)
    by_phone = [_band(Augmenter(phone, 0)(x, 0, i), 4000, 8001) < 1e-3 for i in range(12)]
    assert 0 < sum(by_phone) < 12
    assert by_phone == [_band(Augmenter(phone_and_pitch, 0)(x, 0, i), 4000, 8001) < 1e-3 for i in range(12)]


def test_off_by_default() -> None:
    assert not AugmentConfig().enabled and not AugmentConfig(speeds=[1.0]).enabled
    assert AugmentConfig(noise_prob=0.1).enabled and AugmentConfig(speeds=[0.9, 1.0]).enabled


@pytest.mark.parametrize("override, message", [
    ("encoder.augment.noise_prob=1.5", r"encoder.augment: noise_prob is a probability, between 0 and 1; got 1.5"),
    ("encoder.augment.speeds=[0.9, 3]", r"encoder.augment: speeds must lie between 0.5 and 2.0 .*got \[3.0\]"),
    ("encoder.augment.noise_snr_db=[30, 5]", r"encoder.augment: noise_snr_db must be a range \[low, high\]"),
    ("encoder.augment.reverb_rt60=[0.5]", r"encoder.augment.reverb_rt60 must have 2 items"),
    ("encoder.augment.vtlp_warp=0.7", r"vtlp_warp must be >= 0 and < 0.5"),
    ("encoder.augment.pich_prob=0.5", r"unknown key encoder.augment.pich_prob; did you mean encoder.augment.pitch_prob"),
])
def test_bad_settings_are_refused_with_the_key_and_the_reason(tmp_path: Path, override: str, message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("stages: [encoder]\n")
    with pytest.raises(ConfigError, match=message):
        load_recipe(path, [override])
