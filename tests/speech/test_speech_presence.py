"""No speech, no text (issue 18): Silero segmentation, the energy fallback, the no-speech probability and the
confidence of each segment, and how results show them. Speech here is espeak-ng's Telugu (what the synthetic
corpus speaks); non-speech is white and pink noise, chords and hum."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import speech_calm
from data_prep.espeak import Espeak, Voice
from speech_calm.speech import vad
from speech_calm.speech.audio import SAMPLE_RATE, resample, torch_threads
from speech_calm.speech.formats import LOW_CONFIDENCE_MARK, render
from speech_calm.speech.segment import Segment, SegmentOptions, SilentAudioError, find_segments
from speech_calm.speech.speech_presence import (
    SPEECH_RATE,
    Presence,
    SpeechGate,
    ctc_evidence,
    no_speech_probability,
)
from speech_calm.speech.transcribe import Decoded, FileResult, Transcriber
from speech_calm.towers.vocab import BLANK_ID
from tests.trained import trained_run

SR = SAMPLE_RATE
SENTENCES = ["నా దగ్గర డెబ్బై నాలుగు అరటిపండ్లు ఉన్నాయి", "మా ఇంటి దగ్గర ఒక పెద్ద చెట్టు ఉంది",
             "ఈ రోజు వాతావరణం చాలా బాగుంది"]


def spoken(text: str) -> np.ndarray:
    """`text` spoken by espeak-ng's Telugu voice, 16 kHz mono."""
    audio, sr = Espeak.instance().synthesize(text, Voice("espeak", "te+f3", pitch=70, rate=160))
    return resample(audio, sr, SR)


def white(seconds: float, level: float = 0.05, seed: int = 0) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def pink(seconds: float, level: float = 0.05, seed: int = 1) -> np.ndarray:
    n = int(seconds * SR)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    x = np.fft.irfft(spectrum / np.sqrt(np.arange(len(spectrum)) + 1), n)
    return (level * x / x.std()).astype(np.float32)


def chords(seconds: float) -> np.ndarray:
    """Music-like: a major triad with harmonics every 0.5 s, each note decaying."""
    t = np.arange(int(0.5 * SR)) / SR
    out = []
    for k in range(int(seconds / 0.5)):
        root = 220 * 2 ** ((5 * k % 12) / 12)
        out.append(sum(np.sin(2 * np.pi * root * r * h * t) / h for r in (1, 1.25, 1.5) for h in (1, 2, 3))
                   * np.exp(-3 * t))
    x = np.concatenate(out)
    return (0.1 * x / x.std()).astype(np.float32)


def hum(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * 50 * h * t) / h for h in range(1, 8))
    return (0.05 * x / x.std()).astype(np.float32) + white(seconds, 0.002)


NON_SPEECH = {"white noise": white(6.0), "pink noise": pink(6.0), "chords": chords(6.0), "hum": hum(6.0)}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (see tests/test_infer.py)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Transcriber:
    return speech_calm.load(trained_run(tmp_path_factory) / "run", device="cpu")


# ----------------------------------------------------------------------------------------------- the rule


def test_ctc_evidence_counts_characters_and_their_confidence() -> None:
    # frames: a a _ a b _ _ (labels 5 and 6): three characters (a, a again after a blank, b) over 2 s
    labels = [5, 5, BLANK_ID, 5, 6, BLANK_ID, BLANK_ID]
    probs = torch.full((7, 8), 0.02)
    for i, label in enumerate(labels):
        probs[i, label] = 0.86
    rate, confidence = ctc_evidence(probs.log(), seconds=2.0)
    assert rate == pytest.approx(1.5)
    assert confidence == pytest.approx(np.log(0.86), abs=1e-5)
    blank = torch.zeros(10, 8).index_fill_(1, torch.tensor([BLANK_ID]), 1.0).log_softmax(-1)
    assert ctc_evidence(blank, 1.0) == (0.0, None)


def test_no_speech_probability_needs_every_witness_to_hear_speech() -> None:
    assert no_speech_probability(None, None) is None
    assert no_speech_probability(0.9, None) == pytest.approx(0.1)
    assert no_speech_probability(None, SPEECH_RATE / 2) == pytest.approx(0.5)
    assert no_speech_probability(0.9, 3 * SPEECH_RATE) == pytest.approx(0.1)  # a rate above SPEECH_RATE counts 1
    # m_A "hears" characters in noise (it never learnt to stay blank on it): Silero's verdict still silences it
    assert no_speech_probability(0.01, 13.0) > SpeechGate().no_speech_threshold
    with pytest.raises(ValueError, match="between 0 and 1"):
        SpeechGate(no_speech_threshold=1.5)


# ------------------------------------------------------------------------------------------- segmentation


@pytest.mark.parametrize("name", sorted(NON_SPEECH))
def test_silero_hears_no_speech_in_noise_and_music(name: str) -> None:
    wave = NON_SPEECH[name]
    assert find_segments(wave, options=SegmentOptions()) == []
    assert find_segments(wave, options=SegmentOptions(detector="energy"))  # energy: anything loud is speech


def test_silero_finds_the_sentences_of_a_joined_recording_near_their_boundaries() -> None:
    rng = np.random.default_rng(0)
    pieces, spans, t = [], [], 0
    for k, text in enumerate(SENTENCES * 2):
        pause = white(rng.uniform(0.8, 1.6), 0.01, seed=k)  # noise between sentences at -40 dBFS
        wave = spoken(text)
        pieces += [pause, wave]
        spans.append(((t + len(pause)) / SR, (t + len(pause) + len(wave)) / SR))
        t += len(pause) + len(wave)
    wave = np.concatenate(pieces + [white(1.0, 0.01, seed=99)])
    segments = find_segments(wave, options=SegmentOptions(pad=0.0))
    assert len(segments) == len(spans)
    for seg, (start, end) in zip(segments, spans):
        # espeak's clips start on speech and end with ~0.3 s of its own silence; Silero lets speech go a few
        # 32 ms chunks late (its probability falls through the hysteresis band)
        assert abs(seg.start_seconds - start) <= 0.1 and end - 0.35 <= seg.end_seconds <= end + 0.25
        assert seg.speech_prob is not None and seg.speech_prob > 0.5


@pytest.mark.parametrize("detector", ["silero", "energy"])
def test_silence_still_raises(detector: str) -> None:
    with pytest.raises(SilentAudioError, match="audio is silent"):
        find_segments(np.zeros(3 * SR, np.float32), options=SegmentOptions(detector=detector))


def test_without_silero_the_energy_detector_cuts_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vad, "_model", None)
    monkeypatch.setattr(vad, "_failed", None)
    monkeypatch.setitem(sys.modules, "silero_vad", None)  # `import silero_vad` raises ImportError
    wave = np.concatenate([white(1.0, 0.001), spoken(SENTENCES[0]), white(1.0, 0.001), chords(2.0)])
    with pytest.warns(RuntimeWarning, match="Silero VAD is unavailable .* energy detector"):
        fallback = find_segments(wave, options=SegmentOptions())
    assert fallback == find_segments(wave, options=SegmentOptions(detector="energy"))
    assert all(s.speech_prob is None for s in fallback)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process, not per file
        find_segments(wave, options=SegmentOptions())


def test_loading_silero_leaves_torch_s_thread_count_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vad, "_model", None)
    monkeypatch.setattr(vad, "_failed", None)
    monkeypatch.delitem(sys.modules, "silero_vad.model", raising=False)  # its import sets 1 thread
    monkeypatch.delitem(sys.modules, "silero_vad", raising=False)
    with torch_threads(2):
        assert vad.available()
        assert torch.get_num_threads() == 2


# ---------------------------------------------------------------------------------------------- transcribe


@pytest.mark.parametrize("name", sorted(NON_SPEECH))
def test_noise_and_music_give_no_text_and_a_warning(model: Transcriber, name: str, tmp_path: Path) -> None:
    sf.write(tmp_path / "x.wav", NON_SPEECH[name], SR)
    result = model.transcribe(tmp_path / "x.wav", task="both")
    assert result["text"] == "" and result["translation"] == "" and result["segments"] == []
    assert any("heard no speech" in w for w in result["warnings"])
    # cut by energy, the segments are decoded, but m_A hears no characters: the gate silences them
    result = model.transcribe(tmp_path / "x.wav", task="both", segmentation=SegmentOptions(detector="energy"))
    assert result["segments"] and result["text"] == "" and result["translation"] == ""
    assert all(s["no_speech_prob"] > SpeechGate().no_speech_threshold for s in result["segments"])
    assert len([w for w in result["warnings"] if "no speech (no-speech probability" in w]) == len(result["segments"])


def test_silence_is_still_a_per_file_error(model: Transcriber, tmp_path: Path) -> None:
    sf.write(tmp_path / "quiet.wav", np.zeros(3 * SR, np.float32), SR)
    result = model.transcribe(tmp_path / "quiet.wav", errors="report")
    assert "audio is silent" in result["error"]


def test_speech_keeps_its_text(model: Transcriber, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny m_A, trained on tones, hears no Telugu: with Silero as the only witness (an m_A without a CTC
    head) espeak's speech is judged speech and keeps what the tiny model writes."""
    encode = model.encode

    def no_ctc_head(waves):  # noqa: ANN001, ANN202 - m_A's states without CTC logits
        return encode(waves)._replace(logits=None, frames=None)

    monkeypatch.setattr(model, "encode", no_ctc_head)
    sf.write(tmp_path / "speech.wav", np.concatenate([white(0.5, 0.001), spoken(SENTENCES[1])]), SR)
    result = model.transcribe(tmp_path / "speech.wav", task="both")
    (seg,) = result["segments"]
    assert seg["no_speech_prob"] < 0.5 and seg["confidence"] is None and seg["low_confidence"] is False
    assert seg["text"] and seg["translation"] and not any("no speech" in w for w in result["warnings"])


# --------------------------------------------------------------------------------------------------- output


def test_results_carry_the_evidence_and_subtitles_mark_low_confidence() -> None:
    gate = SpeechGate(no_speech_threshold=0.6, low_confidence=-0.35)
    item = FileResult("x.wav", ("transcribe",), "telugu", duration=6.0, gate=gate,
                      segments=[Segment(0, SR), Segment(2 * SR, 3 * SR), Segment(4 * SR, 5 * SR)],
                      outputs=[{"transcribe": Decoded("అమ్మ", [1, 2], 12)}, {"transcribe": Decoded("పాలు", [3], 12)},
                               {"transcribe": Decoded("", [], 12)}],
                      presence=[Presence(0.1, -0.1, 0.9, 9.0), Presence(0.2, -0.6, 0.8, 6.0),
                                Presence(0.99, -0.45, 0.01, 12.0)])
    result = item.to_dict()
    assert [(s["no_speech_prob"], s["confidence"], s["low_confidence"]) for s in result["segments"]] == [
        (0.1, -0.1, False), (0.2, -0.6, True), (0.99, -0.45, False)]  # a silenced segment is not "low"
    (note,) = result["warnings"]
    assert note.startswith("4.0-5.0 s: no speech (no-speech probability 0.99 > 0.6: Silero speech probability "
                           "0.01, m_A heard 12.0 characters/s)")
    srt = render(result, "srt")
    assert "\nఅమ్మ\n" in srt and f"\n{LOW_CONFIDENCE_MARK}పాలు\n" in srt and srt.count("-->") == 2
    assert f"\n{LOW_CONFIDENCE_MARK}పాలు\n" in render(result, "vtt")
