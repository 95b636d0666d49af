"""speech_calm.speech.audio: reading, resampling, atomic FLAC writes, noise mixing."""

import numpy as np
import pytest
import soundfile as sf

from speech_calm.files import atomic_write
from speech_calm.speech.audio import (
    AudioError,
    apply_gain_db,
    colored_noise,
    encode_audio,
    load_audio,
    mix_at_snr,
    rms,
    write_flac,
)


def _tone(freq: float, seconds: float, sr: int) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_load_audio_downmixes_and_resamples_stereo_44k() -> None:
    left = _tone(1000, 1.0, 44100)
    stereo = np.stack([left, left], axis=1)
    out = load_audio(encode_audio(stereo, 44100), 16000)
    assert out.dtype == np.float32 and out.ndim == 1
    assert out.shape[0] == 16000
    # the 1 kHz tone survives resampling: its spectral peak is still at 1 kHz
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 16000 / out.shape[0] - 1000) < 5


def test_load_audio_from_path_and_identity_rate(tmp_path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, _tone(440, 0.5, 16000), 16000)
    out = load_audio(path)
    assert out.shape == (8000,)
    assert np.allclose(out, _tone(440, 0.5, 16000), atol=1e-3)


@pytest.mark.parametrize(
    "src, message",
    [
        (b"", "empty"),
        (b"RIFF\x00\x00garbage" * 10, "cannot decode"),
        (encode_audio(np.zeros((0, 1), np.float32), 16000), "no samples"),
    ],
)
def test_load_audio_errors_name_the_input(src: bytes, message: str) -> None:
    with pytest.raises(AudioError, match=message) as info:
        load_audio(src, name="clip_42.wav")
    assert "clip_42.wav" in str(info.value)


def test_load_audio_missing_file(tmp_path) -> None:
    with pytest.raises(AudioError, match="no such audio file") as info:
        load_audio(tmp_path / "missing.wav")
    assert "missing.wav" in str(info.value)


def test_write_flac_is_atomic(tmp_path) -> None:
    path = tmp_path / "out" / "x.flac"
    write_flac(path, _tone(300, 0.25, 16000))
    data, sr = sf.read(path)
    assert sr == 16000 and data.shape == (4000,)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_write(path) as tmp:
            tmp.write_bytes(b"half a fl")
            raise RuntimeError("killed mid-write")
    assert path.read_bytes() == before  # the old file is untouched
    assert [p.name for p in path.parent.iterdir()] == ["x.flac"]  # no temporary left behind


def test_mix_at_snr_hits_the_requested_snr() -> None:
    rng = np.random.default_rng(0)
    speech = _tone(200, 1.0, 16000)
    noise = colored_noise(16000, "pink", rng)
    mixed = mix_at_snr(speech, noise, 20.0)
    measured = 20 * np.log10(rms(speech) / rms(mixed - speech))
    assert measured == pytest.approx(20.0, abs=0.01)


def test_colored_noise_is_unit_rms_and_deterministic() -> None:
    a = colored_noise(12345, "brown", np.random.default_rng(1))
    b = colored_noise(12345, "brown", np.random.default_rng(1))
    assert a.shape == (12345,) and np.array_equal(a, b)
    assert rms(a) == pytest.approx(1.0, rel=0.05)
    with pytest.raises(ValueError, match="unknown noise colour"):
        colored_noise(10, "purple", np.random.default_rng(0))


def test_apply_gain_db() -> None:
    x = np.ones(4, np.float32)
    assert np.allclose(apply_gain_db(x, -20.0), 0.1)
