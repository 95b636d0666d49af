"""speech_calm.infer and speech_calm.load: formats, rates and channels, long audio, batching, per-file errors,
SRT/JSON/TSV output, repetition control, alignment plots. One tiny run trained for a few steps."""

from __future__ import annotations

import json
import math
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import speech_calm
from speech_calm.infer import expand_inputs, main
from speech_calm.speech.audio import (
    SAMPLE_RATE,
    AudioError,
    load_audio,
    resample,
    torch_threads,
)
from speech_calm.speech.repetition import (
    loop_size,
    looped,
    repeated_chars,
    repeated_run,
)
from speech_calm.speech.segment import SegmentOptions
from speech_calm.speech.transcribe import Transcriber
from tests.trained import TONES, TONES_CLI, clips, long_recording, trained_run

REPO = Path(__file__).resolve().parents[1]
SRT_TIMING = re.compile(r"^(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})$")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; on a shared, loaded CPU two OpenMP threads wait on each other for
    milliseconds per operation."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def model(ws: Path) -> Transcriber:
    return speech_calm.load(ws / "run", device="cpu")


@pytest.fixture(scope="module")
def phrase(ws: Path) -> np.ndarray:
    """Three test clips with 0.8 s pauses: 16 kHz mono, about 3.3 s."""
    gap = np.zeros(int(0.8 * SAMPLE_RATE), np.float32)
    waves = [load_audio(r["audio"]) for r in clips(ws)[:3]]
    return np.concatenate([gap, waves[0], gap, waves[1], gap, waves[2], gap])


def parse_srt(text: str) -> list[tuple[float, float, list[str]]]:
    """A strict SubRip reader: numbered cues from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, text lines, blank line."""
    cues = []
    for k, block in enumerate(text.rstrip("\n").split("\n\n"), 1):
        lines = block.split("\n")
        assert lines[0] == str(k), block
        m = SRT_TIMING.match(lines[1])
        assert m, lines[1]
        v = [int(x) for x in m.groups()]
        start = v[0] * 3600 + v[1] * 60 + v[2] + v[3] / 1000
        end = v[4] * 3600 + v[5] * 60 + v[6] + v[7] / 1000
        assert start < end and all(line.strip() for line in lines[2:]) and len(lines) > 2, block
        cues.append((start, end, lines[2:]))
    assert all(a[1] <= b[0] for a, b in zip(cues, cues[1:]))  # in order, not overlapping
    return cues


# ----------------------------------------------------------------------------------------------------- API


def test_import_is_light() -> None:
    code = "import sys, speech_calm; assert 'torch' not in sys.modules; print(speech_calm.load.__doc__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("sr", [8000, 44100])
def test_formats_rates_and_stereo(model: Transcriber, phrase: np.ndarray, tmp_path: Path, sr: int) -> None:
    wave = resample(phrase, SAMPLE_RATE, sr)
    stereo = np.stack([wave, 0.7 * wave], axis=1)  # unequal channels: the downmix averages them
    paths = []
    for fmt, subtype, ext in [("WAV", "PCM_16", "wav"), ("FLAC", "PCM_16", "flac"), ("MP3", "MPEG_LAYER_III", "mp3"),
                              ("OGG", "VORBIS", "ogg")]:
        paths.append(tmp_path / f"phrase_{sr}.{ext}")
        sf.write(paths[-1], stereo, sr, format=fmt, subtype=subtype)
    if sr == 8000:  # Opus has its own rates (8/12/16/24/48 kHz)
        paths.append(tmp_path / "phrase_48k.opus")
        sf.write(paths[-1], np.stack([resample(phrase, SAMPLE_RATE, 48000)] * 2, axis=1), 48000, format="OGG",
                 subtype="OPUS")
    results = model.transcribe(paths, task="both", batch_size=8, **TONES)
    for path, result in zip(paths, results):
        assert result["path"] == str(path)
        assert abs(result["duration"] - len(phrase) / SAMPLE_RATE) < 0.15, (path, result["duration"])
        assert len(result["segments"]) == 3, (path, result["segments"])  # one per clip, found after decoding
        assert isinstance(result["text"], str) and isinstance(result["translation"], str)
        assert all(isinstance(s["text"], str) and isinstance(s["translation"], str) for s in result["segments"])


def test_batched_results_equal_one_by_one(model: Transcriber, ws: Path, phrase: np.ndarray, tmp_path: Path) -> None:
    sf.write(tmp_path / "phrase.wav", phrase, SAMPLE_RATE)
    paths = [tmp_path / "phrase.wav"] + [r["audio"] for r in clips(ws)[:4]] + [r["audio"] for r in clips(ws, "dev")]
    together = model.transcribe(paths, task="both", batch_size=4, **TONES)
    alone = [model.transcribe(p, task="both", batch_size=1, **TONES) for p in paths]
    assert together == alone


def test_three_minute_file_is_not_truncated(model: Transcriber, ws: Path, tmp_path: Path) -> None:
    spans = long_recording(ws, tmp_path / "long.flac", seconds=180.0)
    result = model.transcribe(tmp_path / "long.flac", task="transcribe", batch_size=16, **TONES)
    segs = result["segments"]
    assert result["duration"] >= 180.0 and result["translation"] is None
    assert len(segs) == len(spans)  # every clip decoded, the one after 3 minutes too
    assert all(a["end"] <= b["start"] for a, b in zip(segs, segs[1:]))
    for (start, end), seg in zip(spans, segs):
        assert seg["start"] <= start + 0.02 and seg["end"] >= end - 0.02
        assert isinstance(seg["text"], str) and seg["translation"] is None
    assert spans[-1][0] > 179.0 - 2.0 and segs[-1]["end"] > 178.0


def test_token_cap_per_second_of_audio(model: Transcriber) -> None:
    noise = (0.3 * np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE)).astype(np.float32)
    d = model.decoding_for(2.0, max_tokens_per_second=2.0)
    out = model.decode([noise, noise[: SAMPLE_RATE]], ["transcribe"], d)
    for dec, seconds in zip(out, (2.0, 1.0)):
        assert dec["transcribe"].cap == max(8, math.ceil(2.0 * seconds) + 4)
        assert len(dec["transcribe"].tokens) <= dec["transcribe"].cap


def test_looping_output_is_decoded_again_with_ngram_blocking(model: Transcriber, phrase: np.ndarray,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    tok = model.speech.tokenizer
    loop = tok(" ".join(["అమ్మ నీరు"] * 6), add_special_tokens=False)["input_ids"]
    real = Transcriber._search
    calls = []

    def first_call_loops(self, task, states, caps, d, guide=None, rows=None):  # noqa: ANN001, ANN202
        calls.append(d.no_repeat_ngram_size)
        if len(calls) == 1:
            return [list(loop) for _ in range(states.mask.shape[0])]
        return real(self, task, states, caps, d)

    monkeypatch.setattr(Transcriber, "_search", first_call_loops)
    out = model.decode([phrase], ["transcribe"], model.decoding_for(20.0, max_tokens_per_second=30.0))
    assert calls == [0, 3]  # the loop was seen and decoded again with 3-gram blocking
    dec = out[0]["transcribe"]
    assert dec.fallback and repeated_run(dec.text) < repeated_run(tok.decode(loop))


def test_repetition_detector() -> None:
    assert looped("a b a b a b") and looped("x y z w x y z w x y z w") and looped("ఆ ఆ ఆ ఆ ఆ ఆ")
    assert not looped("మళ్ళీ మళ్ళీ చెప్పు") and not looped("a a a b") and not looped("")
    assert repeated_run("one two two two two two two three") == 6
    # inside a word (transcripts written one character per token)
    runaway = "నాకు తెల్ల రంగు బుట్ట కావాలి" + "లు" * 8
    assert looped(runaway) and repeated_chars(runaway) == 16 and repeated_run(runaway) == 0
    assert not looped("నాకు తెల్ల రంగు బుట్ట కావాలి") and not looped("1000 rupees") and repeated_chars("aaab") == 0
    assert loop_size("a b a b a b") > loop_size(runaway) > loop_size("కావాలి")


def test_unusable_files_raise_or_are_reported(model: Transcriber, ws: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + os.urandom(400))
    good = clips(ws)[0]["audio"]
    with pytest.raises(AudioError, match="bad.wav: cannot decode"):
        model.transcribe([good, bad], **TONES)
    results = model.transcribe([good, bad], errors="report", **TONES)
    assert results[0]["segments"] and "error" not in results[0]
    assert results[1]["error"].startswith(f"{bad}: cannot decode") and results[1]["segments"] == []


def test_m4a_without_ffmpeg_says_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "voice.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + os.urandom(200))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(AudioError, match=r"voice.m4a: cannot decode \.m4a audio.*needs ffmpeg.*install it"):
        load_audio(path)


def test_what_libsndfile_cannot_read_goes_through_ffmpeg(phrase: np.ndarray, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # a stand-in ffmpeg (only the command-line contract: -i PATH ... -ac 1 -ar 16000 f32le to stdout)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ffmpeg"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys, numpy as np\n"
        "args = sys.argv[1:]\n"
        "assert args[args.index('-ac') + 1] == '1' and args[args.index('-ar') + 1] == '16000'\n"
        "data = open(args[args.index('-i') + 1], 'rb').read()\n"
        "if not data.startswith(b'FAKE'):\n"
        "    sys.stderr.write('Invalid data found when processing input\\n'); sys.exit(1)\n"
        "sys.stdout.buffer.write(np.frombuffer(data[4:], dtype='<f4').tobytes())\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "voice.m4a").write_bytes(b"FAKE" + phrase.astype("<f4").tobytes())
    np.testing.assert_array_equal(load_audio(tmp_path / "voice.m4a"), phrase)
    with pytest.raises(AudioError, match="cannot decode"):  # dataset bytes: libsndfile's verdict stands
        load_audio(b"FAKE" + phrase.astype("<f4").tobytes())
    (tmp_path / "junk.m4a").write_bytes(b"junk" * 50)
    with pytest.raises(AudioError, match="junk.m4a: cannot decode audio: libsndfile .* and ffmpeg "
                                         r"\(Invalid data found"):
        load_audio(tmp_path / "junk.m4a")


# ----------------------------------------------------------------------------------------------------- CLI


def test_cli_reports_bad_files_and_writes_the_good_ones(ws: Path, phrase: np.ndarray, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    sf.write(inputs / "phrase.flac", phrase, SAMPLE_RATE)
    sf.write(inputs / "sub" / "phrase.wav", phrase[: 2 * SAMPLE_RATE], SAMPLE_RATE)  # same stem, other folder
    (inputs / "corrupt.mp3").write_bytes(os.urandom(3000))
    (inputs / "empty.wav").write_bytes(b"")
    sf.write(inputs / "silent.wav", np.zeros(3 * SAMPLE_RATE, np.float32), SAMPLE_RATE)
    (inputs / "notes.txt").write_text("not audio")  # not picked up from a directory
    out = tmp_path / "out"
    rc = main([str(ws / "run"), str(inputs), str(tmp_path / "missing.wav"), *TONES_CLI, "--format", "srt", "json",
               "tsv", "txt", "--out", str(out), "--batch-size", "3", "--quiet"])
    captured = capsys.readouterr()
    assert rc == 1
    for name, reason in [("corrupt.mp3", "cannot decode"), ("empty.wav", "empty (0 bytes)"),
                         ("silent.wav", "audio is silent"), ("missing.wav", "no such audio file")]:
        assert re.search(rf"error: \S*{re.escape(name)}: [^\n]*{re.escape(reason)}", captured.err), name
    assert "2 of 6 file(s) done" in captured.err and "4 failed" in captured.err
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == sorted(f"{stem}.{fmt}" for stem in ("phrase", "sub/phrase") for fmt in ("srt", "json", "tsv",
                                                                                              "txt"))
    result = json.loads((out / "phrase.json").read_text(encoding="utf-8"))
    assert set(result) >= {"path", "duration", "text", "translation", "segments", "warnings"}
    assert [set(s) for s in result["segments"]] == [{"start", "end", "text", "translation", "no_speech_prob",
                                                     "confidence", "low_confidence"}] * 3
    cues = parse_srt((out / "phrase.srt").read_text(encoding="utf-8"))
    kept = [s for s in result["segments"] if s["text"] or s["translation"]]
    assert [(c[0], c[1]) for c in cues] == [(pytest.approx(s["start"]), pytest.approx(s["end"])) for s in kept]
    assert (out / "phrase.tsv").read_text(encoding="utf-8").splitlines()[0] == "start\tend\ttext\ttranslation"
    # stdout: JSON lines parse, and the same SRT as the file
    lines = [json.loads(x) for x in captured.out.splitlines() if x.startswith("{")]
    assert [r["path"] for r in lines] == [str(inputs / "phrase.flac"), str(inputs / "sub" / "phrase.wav")]
    assert (out / "phrase.srt").read_text(encoding="utf-8") in captured.out


def test_cli_usage_errors_exit_2(ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path), "x.wav", "--quiet"]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert main([str(ws / "run"), "x.wav", "--max-segment", "0.1", "--quiet"]) == 2
    assert "max_segment" in capsys.readouterr().err


def test_alignment_plot(ws: Path, phrase: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sf.write(tmp_path / "phrase.wav", phrase, SAMPLE_RATE)
    rc = main([str(ws / "run"), str(tmp_path / "phrase.wav"), *TONES_CLI, "--plot", "--out", str(tmp_path / "out"),
               "--quiet"])
    assert rc == 0
    for task in ("transcribe", "translate"):
        png = tmp_path / "out" / f"phrase.{task}.align.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_attention_recorder_changes_nothing_and_rows_sum_to_one(model: Transcriber, phrase: np.ndarray) -> None:
    comp, speech = model.speech.model, model.speech
    audio = torch.from_numpy(phrase)[None]
    states = {"speech": speech.tower(audio, torch.tensor([audio.shape[1]]))}
    ids = torch.tensor([speech.prompt_ids("transcribe") + [5, 6, 7]])
    with torch.no_grad():
        plain = comp(ids, tower_outputs=states).logits
        with comp.record_attention() as records:
            recorded = comp(ids, tower_outputs=states).logits
    torch.testing.assert_close(recorded, plain, rtol=0, atol=0)
    assert all(b.record is None for b in comp.bridges["speech"])  # switched off again
    for calls in records["speech"]:
        (probs,) = calls  # one forward, one call per bridge: (B, H, T, S')
        assert probs.shape[:3] == (1, comp.anchor.config.num_attention_heads, ids.shape[1])
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:3]))


def test_expand_inputs_searches_directories_and_keeps_names_unique(tmp_path: Path) -> None:
    for rel in ("a/x.wav", "a/deep/y.MP3", "a/readme.md", "b/x.flac"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "none").mkdir()
    got = expand_inputs([str(tmp_path / "a"), str(tmp_path / "b" / "x.flac"), str(tmp_path / "none")])
    assert got == [(str(tmp_path / "a/deep/y.MP3"), "deep/y"), (str(tmp_path / "a/x.wav"), "x"),
                   (str(tmp_path / "b/x.flac"), "x-2"), (str(tmp_path / "none"), "none")]


def test_segmentation_options_reach_the_api(model: Transcriber, phrase: np.ndarray, tmp_path: Path) -> None:
    sf.write(tmp_path / "phrase.wav", phrase, SAMPLE_RATE)
    merged = model.transcribe(tmp_path / "phrase.wav", "transcribe", gate=TONES["gate"],
                              segmentation=SegmentOptions(detector="energy", min_silence=1.0))
    assert len(merged["segments"]) == 1  # 0.8 s pauses no longer split


def test_word_timestamps_come_from_m_a_and_sit_on_the_file_s_time_axis(model: Transcriber, phrase: np.ndarray) -> None:
    """m_A's CTC posteriors time a transcript's words within its segment; the file's result shifts them by the
    segment's start. (The tiny model's own transcripts are too long for its frames to align: a known text is
    given here; tests/speech/test_words.py checks the times against a known timeline.)"""
    from speech_calm.speech.segment import Segment
    from speech_calm.speech.transcribe import Decoded, FileResult

    audio, lens = torch.from_numpy(phrase[None]), torch.tensor([len(phrase)])
    results = [{"transcribe": Decoded("అమ్మ పాలు", [], 10)}]
    model._words(audio, lens, results)
    words = results[0]["transcribe"].words
    assert [w["word"] for w in words] == ["అమ్మ", "పాలు"]
    assert 0 <= words[0]["start"] < words[0]["end"] <= words[1]["start"] < words[1]["end"] <= len(phrase) / 16000
    item = FileResult("x.wav", ("transcribe",), "telugu", duration=9.0, segments=[Segment(16000, 16000 + len(phrase))],
                      outputs=results)
    shifted = item.to_dict()["segments"][0]["words"]
    assert [w["start"] for w in shifted] == [round(1.0 + w["start"], 3) for w in words]
    with pytest.raises(ValueError, match="use task 'transcribe' or 'both'"):
        model.transcribe("x.wav", task="translate", words=True)


def test_cli_word_level_subtitles(ws: Path, tmp_path: Path) -> None:
    """--word-level: SRT and WebVTT with one cue per transcript word; JSON keeps the words per segment."""
    audio = clips(ws)[0]["audio"]
    assert main([str(ws / "run"), audio, *TONES_CLI, "--task", "transcribe", "--format", "json", "vtt", "--word-level",
                 "--out", str(tmp_path), "--quiet", "--device", "cpu"]) == 0
    stem = Path(audio).stem
    data = json.loads((tmp_path / f"{stem}.json").read_text())
    assert all("words" in seg for seg in data["segments"])
    words = [w for seg in data["segments"] for w in seg["words"]]
    vtt = (tmp_path / f"{stem}.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n") and vtt.count(" --> ") == len(words)
    assert main([str(ws / "run"), audio, "--task", "translate", "--word-timestamps", "--quiet"]) == 2


def test_word_level_cues_in_srt_and_vtt() -> None:
    from speech_calm.speech.formats import render

    result = {"text": "అమ్మ పాలు", "translation": None, "segments": [
        {"start": 1.0, "end": 2.0, "text": "అమ్మ పాలు", "translation": None,
         "words": [{"word": "అమ్మ", "start": 1.1, "end": 1.34}, {"word": "పాలు", "start": 1.6, "end": 1.9}]}]}
    assert parse_srt(render(result, "srt", words=True)) == [(1.1, 1.34, ["అమ్మ"]), (1.6, 1.9, ["పాలు"])]
    assert parse_srt(render(result, "srt")) == [(1.0, 2.0, ["అమ్మ పాలు"])]
    assert render(result, "vtt", words=True) == ("WEBVTT\n\n00:00:01.100 --> 00:00:01.340\nఅమ్మ\n\n"
                                                 "00:00:01.600 --> 00:00:01.900\nపాలు\n")
