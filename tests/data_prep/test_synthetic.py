"""The offline Vaani-shaped corpus: sentence generator, TTS wrapper, mirror writer, end to end."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from data_prep.espeak import Espeak, Festival, TTSError, Voice
from data_prep.sentences import (
    SUPPORTED_LANGUAGES,
    generate_sentences,
    heldout_tokens,
    heldout_values,
    lexicon,
    partition_of,
    sentence_at,
    sentence_for,
    templates,
    vocabulary,
)
from data_prep.synthetic import (
    FESTIVAL_SPLIT,
    _JUNK_KINDS,
    _junk_row,
    _write_parquet,
    build_mirror,
    plan_speakers,
    synthesize_shard,
)
from data_prep.vaani import prepare
from speech_calm.speech.indic import ZERO_WIDTH, normalize, script_fraction

REPO = Path(__file__).resolve().parents[2]
VAANI_COLUMNS = {"audio", "language", "gender", "state", "district", "transcript", "referenceImage"}


# ------------------------------------------------------------------------------------------ sentences


def test_telugu_sentences_have_translations_and_vaani_transcripts() -> None:
    sents = generate_sentences("telugu", 400, seed=0)
    assert generate_sentences("telugu", 400, seed=0) == sents  # deterministic
    assert generate_sentences("telugu", 50, seed=0, start=100) == sents[100:150]  # prefix-stable
    assert generate_sentences("telugu", 20, seed=1) != sents[:20]
    assert len({s.template for s in sents}) >= 20
    for s in sents:
        assert s.translation and s.translation[0].isupper() and "$" not in s.translation
        assert s.text == normalize(s.raw) and s.text
        assert script_fraction(s.text, "telugu") == 1.0
        assert not any(ch in s.text or ch in s.spoken for ch in ZERO_WIDTH + "{}")
    glossed = [s for s in sents if "{" in s.raw]
    assert len(glossed) > 20  # English loanwords written the Vaani way
    s = next(s for s in glossed if s.template == "te_went")
    assert s.translation.startswith(s.translation.split()[0]) and " went to the " in s.translation


def test_telugu_templates_translate_slots_correctly() -> None:
    by_template = {}
    for s in generate_sentences("telugu", 600, seed=3):
        by_template.setdefault(s.template, s)
    name = by_template["te_name"]
    native_name = name.text.split()[-1]
    english = {w.native: w.english for w in lexicon("telugu")["name"]}
    assert name.translation == f"My name is {english[native_name]}."
    # gender agreement: a female name takes the feminine verb
    lives = [s for s in generate_sentences("telugu", 600, seed=3) if s.template == "te_lives"]
    females = {w.native for w in lexicon("telugu")["name"] if w.gender == "f"}
    for s in lives:
        assert s.text.endswith("ఉంటుంది") == (s.text.split()[0] in females)


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_every_language_has_a_closed_native_vocabulary(language: str) -> None:
    sents = generate_sentences(language, 200, seed=0)
    for s in sents:
        assert script_fraction(s.text, language) == 1.0, s.text
        assert (s.translation is not None) == (language == "telugu")
        assert set(s.text.split()) <= vocabulary(language)
    assert 100 <= len(vocabulary(language)) <= 600
    assert len(templates(language)) >= 8


def test_unknown_language_is_rejected() -> None:
    with pytest.raises(ValueError, match="supported: telugu"):
        generate_sentences("marathi", 1)


# ------------------------------------------------------------------------------------------------ TTS


def test_espeak_speaks_telugu() -> None:
    audio, sr = Espeak.instance().synthesize("నమస్కారం", Voice("espeak", "te+f3", pitch=70, rate=160))
    assert sr == 22050 and 0.3 < audio.shape[0] / sr < 3 and abs(audio).max() > 0.05
    with pytest.raises(TTSError, match="no voice"):
        Espeak.instance().synthesize("x", Voice("espeak", "no-such-voice"))


@pytest.mark.skipif(not Festival.available(), reason="festival + festvox-te-nsk not installed (optional)")
def test_festival_telugu_voice_when_installed() -> None:
    texts = ["నమస్కారం", "నా పేరు రాము."]
    audio = Festival().synthesize_batch(texts, Voice("festival", Festival.VOICE, pitch=40, rate=160))
    assert len(audio) == 2 and all(0.3 < a.shape[0] / Festival.sample_rate < 5 for a in audio)


@pytest.mark.parametrize("language", SUPPORTED_LANGUAGES)
def test_heldout_partition_keeps_values_and_sentences_out_of_train(language: str) -> None:
    held = heldout_values(language, 0)
    cats = lexicon(language)
    assert held
    for cat, values in held.items():  # about a fifth of every slot list, at least one value
        assert 1 <= len(values) < len(cats[cat]), cat
    train = [sentence_for(language, i, 0, "train") for i in range(400)]
    heldout = [sentence_for(language, i, 0, "heldout") for i in range(200)]
    assert [sentence_for(language, i, 0, "train") for i in range(20)] == train[:20]  # deterministic
    assert all(partition_of(x, 0) == "train" for x in train) and all(partition_of(x, 0) == "heldout" for x in heldout)
    assert not any(word in held.get(cat, ()) for x in train for cat, word in x.values)
    assert not {x.text for x in train} & {x.text for x in heldout}  # no held-out sentence ever in train
    # held-out sentences over seen values exist too (the hash bucket), so "unseen" is not only "new words"
    assert any(not any(word in held.get(cat, ()) for cat, word in x.values) for x in heldout)
    tokens = heldout_tokens(language, 0)
    assert tokens and not tokens & {w for x in train for w in x.text.split()}
    assert tokens & {w for x in heldout for w in x.text.split()}
    assert heldout_values(language, 1) != held  # another seed, another partition


# --------------------------------------------------------------------------------------------- mirror


def test_shards_are_deterministic_and_vaani_like() -> None:
    speakers = plan_speakers("telugu", 8, seed=0)
    assert plan_speakers("telugu", 8, seed=0) == speakers
    assert len({s.voice for s in speakers}) == 8 and {s.gender for s in speakers} == {"Male", "Female"}
    items = synthesize_shard("telugu", 0, list(range(16)), speakers, 1)
    Espeak.instance().synthesize("ఇంకేదో", speakers[3].voice)  # whatever was spoken before must not matter
    again = synthesize_shard("telugu", 0, list(range(16)), speakers, 1)
    assert [it["row"] for it in items] == [it["row"] for it in again]
    rows = [it["row"] for it in items if not it["junk"]]
    rates = {sf.info(io.BytesIO(r["audio"]["bytes"])).samplerate for r in rows}
    channels = {sf.info(io.BytesIO(r["audio"]["bytes"])).channels for r in rows}
    assert len(rates) >= 3 and channels == {1, 2}
    transcripts = [r["transcript"] for r in rows]
    assert any(t.endswith(" --") for t in transcripts) and any("<" in t for t in transcripts)
    assert any("{" in t for t in transcripts)
    assert all(1.0 < it["seconds"] < 8.0 for it in items if not it["junk"])


def test_junk_rows_exercise_every_filter(tmp_path: Path) -> None:
    """Each kind of bad synthetic row is dropped by the real pipeline under the matching reason."""
    speakers = plan_speakers("telugu", 3, seed=0)
    items = synthesize_shard("telugu", 0, [0, 1, 2], speakers, 1)
    good = [it["row"] for it in items if not it["junk"]]
    rng = np.random.default_rng(0)
    with Espeak() as engine:
        junk = [_junk_row(k, "telugu", speakers[0], 7, sentence_at("telugu", 7), good[0], engine, Voice("espeak", "ur"),
                          rng) for k in _JUNK_KINDS]
    _write_parquet(tmp_path / "m" / "Telugu" / "part-00000.parquet", good + junk)
    stats = prepare("local", tmp_path / "out", ["telugu"], tmp_path / "m", num_workers=1, progress=False)
    assert stats["dropped"] == {"wrong_language": 1, "wrong_script": 1, "empty_transcript": 1, "too_short": 1,
                                "too_long": 1, "unreadable_audio": 1, "duplicate": 1}
    assert stats["total"]["utterances"] == 3


def test_tiny_synthetic_corpus_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "te"
    stats = prepare("synthetic", out, ["telugu"], hours=0.01, seed=0, num_workers=1, tts="espeak", progress=False)
    mirror = out / "_vaani_mirror"
    data = pq.ParquetFile(next((mirror / "Telugu").glob("part-*.parquet")))
    assert VAANI_COLUMNS | {"translation"} <= set(data.schema_arrow.names)
    assert "speakerID" not in data.schema_arrow.names  # speakers come from the join, as in real Vaani
    table = pq.read_table(next((mirror / "speakers").glob("*.parquet")))
    assert set(table.column_names) == {"file_name", "speakerID", "pincode", "speakerImageHash"}
    assert not any(p.name.startswith(("train", "validation", "test")) for p in mirror.rglob("*.parquet"))
    # manifests: three speaker-disjoint splits, Telugu with English, 16 kHz audio
    man = {s: [json.loads(x) for x in (out / f"{s}.jsonl").read_text().splitlines()] for s in ("train", "dev", "test")}
    assert all(man.values())
    spk = {s: {r["speaker"] for r in rs} for s, rs in man.items()}
    assert not (spk["train"] & spk["dev"]) and not (spk["train"] & spk["test"]) and not (spk["dev"] & spk["test"])
    # splits that test generalisation: decided by the source, no dev/test sentence in train, no held-out word
    assert stats["split_method"] == {"telugu": "official"}
    texts = {s: {r["text"] for r in rs} for s, rs in man.items()}
    assert not texts["train"] & texts["dev"] and not texts["train"] & texts["test"]
    train_words = {w for t in texts["train"] for w in t.split()}
    assert not heldout_tokens("telugu", 0) & train_words
    for split in ("dev", "test"):
        overlap = stats["overlap_with_train"][split]
        assert overlap["sentences_in_train"] == overlap["utterances_in_train"] == 0 and overlap["sentences"] > 0
    assert stats["synthetic"]["languages"]["telugu"]["heldout_slot_values"]["name"] > 0
    # every utterance says the sentence of its index in its speaker's partition (held out for dev/test)
    for split, rs in man.items():
        part = "train" if split == "train" else "heldout"
        for r in rs:
            assert r["text"] == sentence_for("telugu", int(r["id"].rsplit("_", 1)[1]), 0, part).text, r["id"]
    records = [r for rs in man.values() for r in rs]
    assert all(r["translation"] and r["source"] == "synthetic" and r["language"] == "telugu" for r in records)
    assert stats["total"]["hours"] == pytest.approx(0.01, abs=0.003)
    assert stats["synthetic"]["languages"]["telugu"]["speakers"] >= 3
    assert "synthetic" in (out / "ATTRIBUTION.md").read_text().lower()
    # rerun: the mirror is reused and the manifests are byte-identical
    before = (out / "train.jsonl").read_bytes()
    again = prepare("synthetic", out, ["telugu"], hours=0.01, seed=0, num_workers=1, tts="espeak", progress=False)
    assert again["run"]["decoded"] == 0 and (out / "train.jsonl").read_bytes() == before


def test_multilingual_mirror(tmp_path: Path) -> None:
    info = build_mirror(tmp_path / "m", ["hindi", "tamil"], hours=0.003, seed=0, num_workers=1, tts="espeak",
                        progress=False)
    assert set(info["languages"]) == {"hindi", "tamil"}
    stats = prepare("local", tmp_path / "out", ["hindi", "tamil"], tmp_path / "m", num_workers=1, progress=False)
    langs = stats["total"]["per_language"]
    assert set(langs) == {"hindi", "tamil"} and all(v["utterances"] > 0 for v in langs.values())
    # one language at a time from the same mirror: the other is filtered out by language
    only = prepare("local", tmp_path / "out_hi", ["hindi"], tmp_path / "m", num_workers=1, progress=False)
    assert only["dropped"]["wrong_language"] >= langs["tamil"]["utterances"]


def test_cli_synthetic_runs_as_a_script(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "data_prep/vaani.py", "--source", "synthetic", "--out", str(out), "--hours", "0.005",
         "--num-workers", "1", "--tts", "espeak", "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Wrote" in proc.stdout and "train" in proc.stdout
    assert (out / "stats.json").is_file()


@pytest.mark.skipif(not Festival.available(), reason="festival + festvox-te-nsk not installed (optional)")
def test_festival_voice_is_a_heldout_test_set_only(tmp_path: Path) -> None:
    """With festival installed, tts=auto adds the test sentences in festival's NSK voice as test_festival.jsonl;
    no train, dev or test utterance is spoken by festival."""
    out = tmp_path / "te"
    # 0.02 h: 6 speakers, so a festival voice among the training speakers (once every 4th) would show
    stats = prepare("synthetic", out, ["telugu"], hours=0.02, seed=0, num_workers=1, tts="auto", progress=False)
    made = stats["synthetic"]["languages"]["telugu"][FESTIVAL_SPLIT]
    assert made["made"] and made["rows"] > 0
    man = {s: [json.loads(x) for x in (out / f"{s}.jsonl").read_text().splitlines()]
           for s in ("train", "dev", "test", FESTIVAL_SPLIT)}
    assert len(man[FESTIVAL_SPLIT]) == stats["extra_test_sets"][FESTIVAL_SPLIT]["utterances"] > 0
    heard = {r["speaker"] for s in ("train", "dev", "test") for r in man[s]}
    assert not heard & {r["speaker"] for r in man[FESTIVAL_SPLIT]}
    assert {r["text"] for r in man[FESTIVAL_SPLIT]} <= {r["text"] for r in man["test"]}  # the test sentences
    voices = stats["synthetic"]["languages"]["telugu"]["voices"]
    assert {v["engine"] for v in voices} == {"espeak"}  # training (and dev/test) speakers: espeak only
    assert stats["overlap_with_train"][FESTIVAL_SPLIT]["sentences_in_train"] == 0
