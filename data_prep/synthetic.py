"""A Vaani-shaped speech corpus made offline: template sentences spoken by synthetic speakers under
Vaani-like recording conditions, written as Vaani-format parquet.

Real Vaani cannot be reached from these machines, so this corpus stands in for it in the demo and
the tests.  It is written exactly like a Vaani mirror and then read back by the ``local`` path of
``data_prep/vaani.py``, so every processing step (language and script filters, normalisation,
resampling, duplicate and duration filters, the speaker join, speaker-disjoint splits) runs on it.

What is imitated:

* speakers: ~60 an hour per language (fewer for tiny corpora), each an espeak-ng voice variant with
  its own pitch, pitch range and rate, and their own "phone": sample rate 8-48 kHz, mono or stereo,
  noise type and level;
* conditions: lead/trail silence, background noise (white, pink, brown, babble-like, mains hum) at an
  SNR of mostly 15-35 dB (10% of clips 5-15 dB), gain, occasional noise bursts and horns that the
  transcript tags as ``<noise>`` / ``<horn>``, some transcripts ending in ``--``;
* transcripts: native script, English loanwords followed by ``{english}`` (from ``sentences.py``);
* rows Vaani would make you drop (~2%): Urdu speech in a Telugu district, transcripts in the wrong
  script, empty transcripts, clips too short or too long, corrupt audio bytes, duplicated rows;
* columns: ``audio`` {bytes, path}, ``language`` (capitalised), ``gender``, ``state``, ``district``,
  ``transcript``, ``referenceImage``, ``isTranscriptionAvailable``, plus ``translation`` (English,
  Telugu only; our extension).  Speaker IDs live in separate speaker tables shaped like the main
  dataset (``file_name``, ``speakerID``, ``pincode``, ``speakerImageHash``), so the join is exercised.

Splits that test generalisation: each speaker gets a split here (speaker-disjoint, ~80/10/10, at least
one speaker in dev and in test), written in a ``split`` column that the pipeline keeps as an official
split.  Train speakers speak only sentences of the train partition of ``sentences.py``, dev and test
speakers only held-out ones: no dev/test sentence occurs in train, and a share of slot values (names,
towns, numbers, objects ...) is never heard in train at all.

Voices m_A never heard: festival's Telugu NSK voice is never a training voice.  When it is installed
(and ``tts="auto"``), the Telugu test utterances are spoken a second time by it, each under the same
recording conditions as its espeak original, as rows of the split ``test_festival``
(``test_festival.jsonl`` after the pipeline): the same sentences and phones, another voice.

Everything is a pure function of (language, seed, utterance index) and is built in shards that are
written atomically, so a rerun with the same settings reuses finished shards.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import shutil
import zlib
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from data_prep.espeak import Espeak, Festival, Voice
from data_prep.sentences import SUPPORTED_LANGUAGES, Sentence, heldout_values, sentence_for
from speech_calm.files import atomic_write
from speech_calm.speech.audio import (
    colored_noise,
    encode_audio,
    limit_torch_threads,
    mix_at_snr,
    resample,
    rms,
    torch_threads,
)

__all__ = ["SynthSpeaker", "plan_speakers", "festival_twins", "synthesize_shard", "build_mirror",
           "FORMAT_VERSION", "FESTIVAL_SPLIT"]

# 2: speakers carry their split and speak only sentences of its partition; festival only as a test voice.
FORMAT_VERSION = 2
# The split (and manifest name) of the held-out voice: test sentences spoken by festival's NSK voice.
FESTIVAL_SPLIT = "test_festival"
# Speaker shares; durations follow them (speakers take turns in equal blocks of utterances).
_SPLIT_SHARES = {"dev": 0.1, "test": 0.1}
SHARD_SIZE = 48
JUNK_PROBABILITY = 0.02
_BAR = "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} min of speech [{elapsed}<{remaining}]"
MEAN_CLIP_SECONDS = 3.0  # only used to guess how many shards to start in parallel

ESPEAK_VOICES = {"telugu": "te", "hindi": "hi", "kannada": "kn", "tamil": "ta", "urdu": "ur"}
_MALE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
_FEMALE_VARIANTS = ("f1", "f2", "f3", "f4", "f5")
# Phone/recorder sample rates and how often they occur (Vaani is 16 kHz "by spec", not always).
_SAMPLE_RATES = ((16000, 0.45), (8000, 0.10), (22050, 0.10), (44100, 0.15), (48000, 0.20))
_NOISES = ("white", "pink", "brown", "babble", "hum")
# Background noise levels: most clips at a phone-in-a-room SNR, a tenth in a noisy street. Measured: at
# 15-35 dB (a tenth at 5-15 dB) an encoder trained from scratch for ten CPU minutes stayed above 60% CER on
# unseen speakers, while clean audio of the same voices reached 10%; these levels keep the noise audible
# and varied but learnable within the demo's budget.
SNR_DB = (20.0, 40.0)
HARD_SNR_DB = (10.0, 20.0)
HARD_FRACTION = 0.1
# Vaani-style state/district names per language (states as in Vaani config names).
_REGIONS = {
    "telugu": (("AndhraPradesh", ("Anantpur", "Chittoor", "Guntur", "Krishna", "Srikakulam", "Visakhapatnam")),
               ("Telangana", ("Hyderabad", "Karimnagar", "Nizamabad", "Warangal", "Adilabad"))),
    "hindi": (("UttarPradesh", ("Varanasi", "Lucknow", "Gorakhpur")), ("Bihar", ("Patna", "Purnia")),
              ("MadhyaPradesh", ("Bhopal", "Jabalpur"))),
    "kannada": (("Karnataka", ("Bangalore", "Mysore", "Belgaum", "Dharwad", "Shimoga")),),
    "tamil": (("TamilNadu", ("Chennai", "Madurai", "Coimbatore", "Salem")),),
}
_JUNK_KINDS = ("wrong_language", "wrong_script", "empty_transcript", "too_short", "too_long", "corrupt", "duplicate")


@dataclass(frozen=True)
class SynthSpeaker:
    """A synthetic speaker: a voice plus the recording conditions of their phone."""

    id: str
    gender: str  # "Male" / "Female", as Vaani writes it
    voice: Voice
    state: str
    district: str
    sample_rate: int
    channels: int
    noise: str
    snr_offset_db: float
    gain_db: float
    pincode: int
    image_hash: str
    split: str = "train"  # train, dev, test, or FESTIVAL_SPLIT


def _rng(*parts: Any) -> np.random.Generator:
    """A numpy generator seeded from the given parts (stable across runs, unlike hash())."""
    return np.random.default_rng([zlib.crc32(str(p).encode()) for p in parts])


def plan_size(hours: float) -> tuple[int, int]:
    """(speakers per language, consecutive utterances per speaker turn) for a corpus of ``hours``.

    About 60 speakers an hour (at least 30, at most 400): a speech encoder trained from scratch generalises
    to unseen voices from many speakers far better than from many clips of few speakers, and the 80/10/10
    split keeps 6 held-out speakers each in dev and test.  Tiny corpora get fewer speakers (at least 3, one
    per split).  Utterances come in runs of up to 8 per speaker, so festival (slow to start) can speak a
    run in one process.
    """
    est_utts = max(1, int(hours * 3600 / MEAN_CLIP_SECONDS))
    n_speakers = int(min(max(30, round(60 * hours)), 400, max(3, est_utts // 4)))
    block = int(min(8, max(1, est_utts // (n_speakers * 4))))
    return n_speakers, block


def speaker_splits(language: str, n: int, seed: int) -> list[str]:
    """The split of each of ``n`` speakers: ~80/10/10 by count (so by duration, as speakers take equal
    turns), at least one in dev and one in test when n >= 3; which speakers go where is seeded."""
    if n < 3:
        return ["train"] * n
    order = list(range(n))
    _rng("splits", language, seed).shuffle(order)
    n_test = max(1, round(_SPLIT_SHARES["test"] * n))
    n_dev = max(1, round(_SPLIT_SHARES["dev"] * n))
    out = ["train"] * n
    for pos, k in enumerate(order[: n_test + n_dev]):
        out[k] = "test" if pos < n_test else "dev"
    return out


def plan_speakers(language: str, n: int, seed: int) -> list[SynthSpeaker]:
    """``n`` espeak-ng speakers for ``language``, alternating male and female, each with its split;
    deterministic for ``seed``.  Festival never speaks for a speaker here (see :func:`festival_twins`)."""
    rng = _rng("speakers", language, seed)
    splits = speaker_splits(language, n, seed)
    code = ESPEAK_VOICES[language]
    regions = [(s, d) for s, ds in _REGIONS[language] for d in ds]
    rates, weights = zip(*_SAMPLE_RATES)
    speakers = []
    for k in range(n):
        male = k % 2 == 0
        engine = "espeak"
        variants = _MALE_VARIANTS if male else _FEMALE_VARIANTS
        variant = variants[int(rng.integers(len(variants)))]
        pitch = int(rng.integers(25, 55) if male else rng.integers(50, 85))
        voice = Voice(
            engine=engine,
            name=f"{code}+{variant}" if engine == "espeak" else Festival.VOICE,
            pitch=pitch,
            pitch_range=int(rng.integers(30, 90)),
            rate=int(rng.integers(135, 186)),
        )
        state, district = regions[int(rng.integers(len(regions)))]
        speakers.append(SynthSpeaker(
            id=f"syn-{code}-{k:03d}",
            gender="Male" if male else "Female",
            voice=voice,
            state=state,
            district=district,
            sample_rate=int(rng.choice(rates, p=np.array(weights) / sum(weights))),
            channels=2 if rng.random() < 0.15 else 1,
            noise=_NOISES[int(rng.integers(len(_NOISES)))],
            snr_offset_db=float(rng.uniform(-3, 3)),
            gain_db=float(rng.uniform(-9, -1)),
            pincode=int(rng.integers(500001, 535999)),  # fake, and never copied into the manifests
            image_hash=hashlib.sha1(f"{language}/{seed}/{k}".encode()).hexdigest(),
            split=splits[k],
        ))
    return speakers


def festival_twins(speakers: list[SynthSpeaker]) -> list[SynthSpeaker]:
    """For each test speaker, a speaker with the same phone and prosody settings whose voice is festival's
    Telugu NSK voice: the held-out voice set differs from the test set in the voice alone."""
    twins = []
    for spk in speakers:
        if spk.split != "test":
            continue
        voice = Voice("festival", Festival.VOICE, pitch=spk.voice.pitch, pitch_range=spk.voice.pitch_range,
                      rate=spk.voice.rate)
        twins.append(replace(spk, id=spk.id.replace("syn-", "syn-nsk-", 1), voice=voice, split=FESTIVAL_SPLIT,
                             image_hash=hashlib.sha1(f"nsk/{spk.image_hash}".encode()).hexdigest()))
    return twins


# ------------------------------------------------------------------------------- recording conditions


def _noise(kind: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS background noise of the given kind."""
    if kind in ("white", "pink", "brown"):
        return colored_noise(n, kind, rng)
    t = np.arange(n) / sr
    if kind == "hum":  # mains hum (50 Hz and harmonics) over a little hiss
        hum = sum(np.sin(2 * np.pi * 50 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in (1, 2, 3, 4))
        out = hum + 0.3 * colored_noise(n, "white", rng)
    else:  # "babble": pink noise with a syllable-rate envelope, like distant chatter
        env = 1.0 + 0.8 * np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 2 * np.pi))
        env *= 1.0 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t)
        out = colored_noise(n, "pink", rng) * env
    level = rms(out)
    return (out / level if level > 0 else out).astype(np.float32)


def _event(kind: str, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A short noise burst (a door, a cough: "<noise>") or a horn ("<horn>")."""
    n = int(sr * rng.uniform(0.15, 0.4))
    env = np.hanning(n).astype(np.float32)
    if kind == "horn":
        t = np.arange(n) / sr
        f0 = rng.uniform(350, 500)
        tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))
        return (0.5 * tone * env).astype(np.float32)
    return (0.5 * colored_noise(n, "white", rng) * env).astype(np.float32)


def _record(
    speech: np.ndarray, tts_sr: int, spk: SynthSpeaker, rng: np.random.Generator
) -> tuple[np.ndarray, list[str], list[str]]:
    """Put clean TTS speech through the speaker's "phone": returns (audio, leading tags, trailing tags).

    Audio is (frames, channels) float32 at ``spk.sample_rate``.
    """
    peak = float(np.max(np.abs(speech))) or 1.0
    speech = speech / peak * 0.7
    parts = [np.zeros(int(tts_sr * rng.uniform(0.15, 0.5)), np.float32), speech,
             np.zeros(int(tts_sr * rng.uniform(0.2, 0.6)), np.float32)]
    lead, trail = [], []
    roll = rng.random()
    if roll < 0.08:  # an event before or after the speech, tagged as Vaani transcribers do
        kind = "horn" if roll < 0.025 else "noise"
        event = _event(kind, tts_sr, rng)
        gap = np.zeros(int(tts_sr * 0.1), np.float32)
        if rng.random() < 0.5:
            parts = [parts[0], event, gap] + parts[1:]
            lead.append(f"<{kind}>")
        else:
            parts = parts[:-1] + [gap, event] + parts[-1:]
            trail.append(f"<{kind}>")
    x = resample(np.concatenate(parts), tts_sr, spk.sample_rate)
    snr = rng.uniform(*SNR_DB) if rng.random() >= HARD_FRACTION else rng.uniform(*HARD_SNR_DB)
    snr = float(np.clip(snr + spk.snr_offset_db, 3, 40))
    x = mix_at_snr(x, _noise(spk.noise, x.shape[0], spk.sample_rate, rng), snr)
    gain = spk.gain_db + rng.uniform(-4, 2)
    x = x / (float(np.max(np.abs(x))) or 1.0) * min(10 ** (gain / 20), 0.99)
    if spk.channels == 2:  # a second microphone: a little quieter, with its own hiss
        other = x * rng.uniform(0.6, 1.0) + 0.002 * colored_noise(x.shape[0], "white", rng)
        return np.stack([x, other], axis=1).astype(np.float32), lead, trail
    return x[:, None].astype(np.float32), lead, trail


# ------------------------------------------------------------------------------------------- shards


def _file_name(spk: SynthSpeaker, index: int, suffix: str = "") -> str:
    return f"SynthVaani_{spk.state}_{spk.district}_{spk.id}_{index:06d}{suffix}.wav"


def _row(spk: SynthSpeaker, language: str, file_name: str, audio: bytes, transcript: str,
         translation: str | None, template: str, lang_label: str | None = None) -> dict[str, Any]:
    return {
        "audio": {"bytes": audio, "path": file_name},
        "language": lang_label or language.capitalize(),
        "gender": spk.gender,
        "state": spk.state,
        "district": spk.district,
        "transcript": transcript,
        "referenceImage": f"Images/{template}_{zlib.crc32(file_name.encode()) % 997:03d}.jpg",
        "isTranscriptionAvailable": "Yes",
        "translation": translation,
        "split": spk.split,
    }


def _speak(engine: Espeak, texts_by_voice: dict[Voice, list[str]]) -> dict[tuple[Voice, str], tuple[np.ndarray, int]]:
    """TTS for every (voice, text), in a fixed order; festival voices are spoken one process per voice."""
    out: dict[tuple[Voice, str], tuple[np.ndarray, int]] = {}
    for voice, texts in texts_by_voice.items():
        if voice.engine == "festival":
            fest = Festival()
            for text, audio in zip(texts, fest.synthesize_batch(texts, voice)):
                out[(voice, text)] = (audio, fest.sample_rate)
        else:
            for text in texts:
                out[(voice, text)] = engine.synthesize(text, voice)
    return out


def synthesize_shard(language: str, seed: int, indices: list[int], speakers: list[SynthSpeaker],
                     block: int) -> list[dict[str, Any]]:
    """Rows for utterance ``indices``, each a dict with the parquet row, speaker and duration.

    Runs in a worker process.  Returned items: ``{"row": ..., "speaker": SynthSpeaker id,
    "seconds": float, "junk": bool, "index": int}``; a junk row follows its utterance.
    """
    plan = []
    for i in indices:
        spk = speakers[(i // block) % len(speakers)]
        plan.append((i, spk, _sentence_of(language, seed, i, spk)))
    wanted: dict[Voice, list[str]] = {}
    for _, spk, sent in plan:
        wanted.setdefault(spk.voice, []).append(sent.spoken)
    urdu = Voice("espeak", ESPEAK_VOICES["urdu"], pitch=50, rate=160)
    # A fresh engine per shard: its audio then depends on the shard alone, not on which worker ran
    # it or what that worker spoke before (see Espeak).
    with Espeak(seed=int(indices[0]) if indices else 0) as engine:
        spoken = _speak(engine, wanted)
        return _render_shard(plan, language, seed, spoken, engine, urdu)


def _sentence_of(language: str, seed: int, index: int, spk: SynthSpeaker) -> Sentence:
    """What utterance ``index`` says: a train-partition sentence for a train speaker, else a held-out one."""
    return sentence_for(language, index, seed, "train" if spk.split == "train" else "heldout")


def synthesize_festival_shard(language: str, seed: int, indices: list[int], speakers: list[SynthSpeaker],
                              block: int) -> list[dict[str, Any]]:
    """The held-out voice rows for test utterances ``indices``: each spoken by the festival twin of its
    speaker, recorded with the same random draws (silence, noise, SNR, gain, tags) as the original."""
    twins = {spk.id.replace("syn-nsk-", "syn-", 1): spk for spk in festival_twins(speakers)}
    plan = []
    for i in indices:
        spk = speakers[(i // block) % len(speakers)]
        if spk.id not in twins:
            raise ValueError(f"utterance {i} is spoken by {spk.id} ({spk.split}), not a test speaker")
        plan.append((i, twins[spk.id], _sentence_of(language, seed, i, spk)))
    wanted: dict[Voice, list[str]] = {}
    for _, spk, sent in plan:
        wanted.setdefault(spk.voice, []).append(sent.spoken)
    with Espeak(seed=int(indices[0]) if indices else 0) as engine:
        spoken = _speak(engine, wanted)
        items = _render_shard(plan, language, seed, spoken, engine, None)
    return [it for it in items if not it["junk"]]


def _render_shard(plan: list[tuple[int, SynthSpeaker, Sentence]], language: str, seed: int,
                  spoken: dict[tuple[Voice, str], tuple[np.ndarray, int]], engine: Espeak,
                  urdu: Voice | None) -> list[dict[str, Any]]:
    """Record each utterance under its speaker's conditions and add the occasional bad row (none when
    ``urdu`` is None)."""
    items: list[dict[str, Any]] = []
    for i, spk, sent in plan:
        rng = _rng("utt", language, seed, i)
        speech, tts_sr = spoken[(spk.voice, sent.spoken)]
        audio, lead, trail = _record(speech, tts_sr, spk, rng)
        transcript = " ".join(lead + [sent.raw] + trail)
        if rng.random() < 0.1:
            transcript += " --"
        name = _file_name(spk, i)
        wav = encode_audio(audio, spk.sample_rate)
        row = _row(spk, language, name, wav, transcript, sent.translation, sent.template)
        items.append({"row": row, "speaker": spk.id, "seconds": audio.shape[0] / spk.sample_rate,
                      "junk": False, "index": i})
        if rng.random() < JUNK_PROBABILITY and urdu is not None:
            junk = _junk_row(_JUNK_KINDS[int(rng.integers(len(_JUNK_KINDS)))], language, spk, i, sent, row,
                             engine, urdu, rng)
            items.append({"row": junk, "speaker": spk.id, "seconds": 0.0, "junk": True, "index": i})
    return items


def _junk_row(kind: str, language: str, spk: SynthSpeaker, i: int, sent: Sentence, previous: dict[str, Any],
              engine: Espeak, urdu: Voice, rng: np.random.Generator) -> dict[str, Any]:
    """A row that Vaani-style processing must drop, of the given ``kind``."""
    name = _file_name(spk, i, f"_{kind}")
    sr = spk.sample_rate

    def noise_clip(seconds: float) -> bytes:
        return encode_audio(0.05 * colored_noise(int(sr * seconds), "pink", rng), sr)

    if kind == "duplicate":  # the same row twice, as happens when mirrors overlap
        return dict(previous)
    if kind == "wrong_language":  # Urdu speech recorded in the same district
        from babel import Locale

        ur = Locale.parse("ur")
        day = ur.days["format"]["wide"][int(rng.integers(7))]
        month = ur.months["format"]["wide"][int(rng.integers(1, 13))]
        text = f"{day} {month}"
        speech, tts_sr = engine.synthesize(text, urdu)
        audio, _, _ = _record(speech, tts_sr, spk, rng)
        return _row(spk, language, name, encode_audio(audio, sr), text, None, "junk", lang_label="Urdu")
    if kind == "wrong_script":  # transcribed in Latin letters
        latin = sent.translation or "hello how are you"
        return _row(spk, language, name, noise_clip(1.5), latin, None, "junk")
    if kind == "empty_transcript":
        return _row(spk, language, name, noise_clip(1.5), "<noise>", None, "junk")
    if kind == "too_short":
        return _row(spk, language, name, noise_clip(0.3), sent.raw.split()[0], None, "junk")
    if kind == "too_long":
        return _row(spk, language, name, noise_clip(float(rng.uniform(31, 36))), sent.raw, None, "junk")
    # corrupt: bytes that are not an audio file (a truncated upload)
    return _row(spk, language, name, rng.bytes(512), sent.raw, sent.translation, "junk")


# ------------------------------------------------------------------------------------------- parquet


_FEATURES = {
    "audio": {"_type": "Audio"},
    **{c: {"dtype": "string", "_type": "Value"} for c in (
        "language", "gender", "state", "district", "transcript", "referenceImage",
        "isTranscriptionAvailable", "translation", "split")},
}


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [pa.field("audio", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())]))]
        + [pa.field(c, pa.string()) for c in _FEATURES if c != "audio"],
        # The same metadata `datasets` writes, so `load_dataset("parquet", ...)` sees an Audio column.
        metadata={"huggingface": json.dumps({"info": {"features": _FEATURES}})},
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_write(path) as tmp:
        pq.write_table(table, tmp, row_group_size=16)


def _write_speaker_table(path: Path, items: list[dict[str, Any]], speakers: dict[str, SynthSpeaker]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    seen: dict[str, dict[str, Any]] = {}
    for it in items:
        spk = speakers[it["speaker"]]
        name = it["row"]["audio"]["path"]
        seen[name] = {"file_name": name, "speakerID": spk.id, "pincode": spk.pincode,
                      "speakerImageHash": spk.image_hash}
    with atomic_write(path) as tmp:
        pq.write_table(pa.Table.from_pylist(list(seen.values())), tmp)


# ------------------------------------------------------------------------------------------- driver


class _InlineExecutor:
    """The part of ProcessPoolExecutor's interface used here, running jobs at submit time."""

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        fut.set_result(fn(*args))
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def build_mirror(
    mirror: str | os.PathLike,
    languages: Iterable[str],
    hours: float = 1.0,
    seed: int = 0,
    num_workers: int = 2,
    tts: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Write a synthetic Vaani-format mirror of ``hours`` of speech per language; return its description.

    Layout: ``<mirror>/<Language>/part-NNNNN.parquet`` (data), ``<mirror>/speakers/<Language>-part-NNNNN.parquet``
    (speaker tables), ``<mirror>/SYNTHETIC.json`` (what was built; also marks the mirror as synthetic).
    A rerun with the same settings returns at once; an interrupted run reuses the shards it wrote.
    """
    languages = [lang.lower() for lang in languages]
    for lang in languages:
        if lang not in SUPPORTED_LANGUAGES:
            raise ValueError(f"--source synthetic supports {', '.join(SUPPORTED_LANGUAGES)}; got {lang!r}")
    if hours <= 0:
        raise ValueError(f"--hours must be positive, got {hours}")
    if tts not in ("auto", "espeak"):
        raise ValueError(f"tts must be 'auto' or 'espeak', got {tts!r}")
    use_festival = tts == "auto" and Festival.available()
    mirror = Path(mirror)
    params = {"format": FORMAT_VERSION, "languages": languages, "hours": hours, "seed": seed,
              "festival": use_festival}
    marker, progress_file = mirror / "SYNTHETIC.json", mirror / "_progress.json"
    if marker.is_file():
        info = json.loads(marker.read_text(encoding="utf-8"))
        if info.get("params") == params:
            return info
    done: dict[str, Any] = {}
    if progress_file.is_file():
        saved = json.loads(progress_file.read_text(encoding="utf-8"))
        if saved.get("params") == params:
            done = saved["shards"]
    if not done and mirror.exists():
        shutil.rmtree(mirror)  # other settings: start over (this directory is ours alone)
    mirror.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)

    def save_progress(key: str, entry: dict[str, Any]) -> None:
        done[key] = entry
        _write_json(progress_file, {"params": params, "shards": done})

    executor = (
        ProcessPoolExecutor(max_workers=num_workers, initializer=limit_torch_threads,
                            mp_context=multiprocessing.get_context("spawn"))
        if num_workers > 1 else _InlineExecutor()
    )
    summary: dict[str, Any] = {}
    try:
        with torch_threads(1):  # inline synthesis is single-threaded too (see limit_torch_threads)
            for language in languages:
                summary[language] = _build_language(
                    mirror, language, hours, seed, use_festival, executor, max(1, num_workers), done,
                    save_progress, progress)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    info = {"params": params, "seed": seed, "engines": {"espeak-ng": True, "festival": use_festival},
            "languages": summary}
    _write_json(marker, info)
    progress_file.unlink(missing_ok=True)
    return info


def _build_language(
    mirror: Path, language: str, hours: float, seed: int, use_festival: bool, executor: Any, workers: int,
    done: dict[str, Any], save_progress: Callable[[str, dict[str, Any]], None], progress: bool,
) -> dict[str, Any]:
    """Synthesise shards of one language in order until ``hours`` of speech are written.

    Shards are computed ahead in parallel (a window of 2 per worker, never far past the estimated
    end) and consumed in index order, so the cut-off point is the same whatever the worker timing.
    """
    from tqdm import tqdm

    n_speakers, block = plan_size(hours)
    speakers = plan_speakers(language, n_speakers, seed)
    by_id = {s.id: s for s in speakers}
    label = language.capitalize()
    target = hours * 3600.0
    total, junk, rows, consumed, next_shard = 0.0, 0, 0, 0, 0
    test_indices: list[int] = []  # test utterances written, for the held-out voice set
    pending: deque[tuple[int, Future | None]] = deque()
    bar = tqdm(total=round(target / 60, 2), unit="min", desc=f"synthesising {language}",
               disable=not progress, dynamic_ncols=True, mininterval=0.5, bar_format=_BAR)

    def submit_ahead() -> None:
        nonlocal next_shard
        per_shard = total / consumed if consumed and total > 0 else MEAN_CLIP_SECONDS * SHARD_SIZE
        last_needed = consumed + math.ceil(max(0.0, target - total) / per_shard)
        while not pending or (len(pending) < 2 * workers and next_shard < last_needed):
            k = next_shard
            if f"{language}/{k}" in done:
                pending.append((k, None))
            else:
                indices = list(range(k * SHARD_SIZE, (k + 1) * SHARD_SIZE))
                pending.append((k, executor.submit(synthesize_shard, language, seed, indices, speakers, block)))
            next_shard += 1

    try:
        while total < target:
            submit_ahead()
            k, fut = pending.popleft()
            key = f"{language}/{k}"
            if fut is None:  # written by an earlier, interrupted run
                entry = done[key]
            else:
                items, seconds = [], 0.0
                for it in fut.result():
                    if total + seconds >= target and not it["junk"]:
                        break  # the corpus is full: cut the shard after the utterance that filled it
                    items.append(it)
                    seconds += it["seconds"]
                _write_parquet(mirror / label / f"part-{k:05d}.parquet", [it["row"] for it in items])
                _write_speaker_table(mirror / "speakers" / f"{label}-part-{k:05d}.parquet", items, by_id)
                entry = {"seconds": seconds, "junk": sum(it["junk"] for it in items), "rows": len(items),
                         "test_indices": [it["index"] for it in items
                                          if not it["junk"] and by_id[it["speaker"]].split == "test"]}
                save_progress(key, entry)
            test_indices += entry["test_indices"]
            total += entry["seconds"]
            junk += entry["junk"]
            rows += entry["rows"]
            consumed += 1
            bar.update(max(0.0, min(round(entry["seconds"] / 60, 2), bar.total - bar.n)))
    finally:
        for _, fut in pending:
            if fut is not None:
                fut.cancel()
        bar.close()
    festival = None
    if use_festival and language == "telugu":
        festival = _build_festival_set(mirror, language, seed, speakers, block, test_indices, executor, done,
                                       save_progress)
    split_speakers = {s: sum(spk.split == s for spk in speakers) for s in ("train", "dev", "test")}
    return {
        "speakers": n_speakers, "rows": rows, "junk_rows": junk, "shards": consumed,
        "hours_speech": round(total / 3600, 4),
        "speakers_per_split": split_speakers,
        # Slot values never spoken by a train speaker (sentences.heldout_values), per category.
        "heldout_slot_values": {cat: len(v) for cat, v in heldout_values(language, seed).items()},
        FESTIVAL_SPLIT: festival or {"made": False},
        "voices": [asdict(s.voice) | {"id": s.id, "sample_rate": s.sample_rate, "channels": s.channels,
                                      "noise": s.noise} for s in speakers],
    }


def _build_festival_set(
    mirror: Path, language: str, seed: int, speakers: list[SynthSpeaker], block: int, test_indices: list[int],
    executor: Any, done: dict[str, Any], save_progress: Callable[[str, dict[str, Any]], None],
) -> dict[str, Any]:
    """Speak the test utterances ``test_indices`` again with festival's NSK voice, as ``FESTIVAL_SPLIT`` rows
    in ``<mirror>/<Language>/festival-part-NNNNN.parquet`` (resumable per shard like the main corpus)."""
    label = language.capitalize()
    by_id = {s.id: s for s in festival_twins(speakers)}
    chunks = [test_indices[k:k + SHARD_SIZE] for k in range(0, len(test_indices), SHARD_SIZE)]
    futures = {k: executor.submit(synthesize_festival_shard, language, seed, chunk, speakers, block)
               for k, chunk in enumerate(chunks) if f"{language}/festival/{k}" not in done}
    rows, seconds = 0, 0.0
    for k in range(len(chunks)):
        key = f"{language}/festival/{k}"
        if k in futures:
            items = futures[k].result()
            _write_parquet(mirror / label / f"festival-part-{k:05d}.parquet", [it["row"] for it in items])
            _write_speaker_table(mirror / "speakers" / f"{label}-festival-part-{k:05d}.parquet", items, by_id)
            save_progress(key, {"seconds": sum(it["seconds"] for it in items), "rows": len(items)})
        rows += done[key]["rows"]
        seconds += done[key]["seconds"]
    return {"made": True, "voice": Festival.VOICE, "speakers": len(by_id), "rows": rows,
            "hours_speech": round(seconds / 3600, 4)}


def _write_json(path: Path, obj: Any) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")
