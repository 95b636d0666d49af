"""Tests of speech_calm.towers.vocab: the multi-script character vocabulary of the CTC head."""

from __future__ import annotations

import json

import pytest
import torch

from speech_calm.towers.vocab import BLANK_ID, UNK_CHAR, UNK_ID, CharVocab

TELUGU = ["నమస్కారం", "తెలుగు భాష", "కృష్ణా జిల్లా"]  # vowel signs, viramas (్), anusvara (ం)


def test_telugu_with_vowel_signs_round_trips() -> None:
    vocab = CharVocab.build(TELUGU)
    for text in TELUGU:
        ids = vocab.encode(text)
        assert len(ids) == len(text), "one id per code point: vowel signs and viramas are their own tokens"
        assert UNK_ID not in ids and BLANK_ID not in ids
        assert vocab.decode(ids) == text
    # The virama U+0C4D and vowel sign U+0C3E of నమస్కారం are in the vocabulary as separate characters.
    assert "\u0c4d" in vocab.chars and "\u0c3e" in vocab.chars


def test_build_is_sorted_deterministic_and_multiscript() -> None:
    texts = TELUGU + ["नमस्ते दुनिया", "ನಮಸ್ಕಾರ", "வணக்கம்"]
    vocab = CharVocab.build(texts)
    assert vocab == CharVocab.build(list(reversed(texts)))
    assert vocab.chars == sorted(vocab.chars)
    assert " " in vocab.chars
    assert len(vocab) == len(set("".join(texts))) + 2  # every character seen, plus blank and <unk>
    for text in texts:
        assert vocab.decode(vocab.encode(text)) == text


def test_unknown_characters_map_to_unk(caplog) -> None:
    vocab = CharVocab.build(["తెలుగు x7, ok"])  # Latin, digits, punctuation are outside the scripts
    assert set(vocab.chars) == set("తెలుగ ")
    assert "map to <unk>" in caplog.text
    ids = vocab.encode("తx")
    assert ids[1] == UNK_ID
    assert vocab.decode(ids) == "త" + UNK_CHAR
    assert vocab.decode([BLANK_ID, ids[0], BLANK_ID]) == "త"
    with pytest.raises(ValueError, match="outside this vocabulary"):
        vocab.decode([len(vocab)])


def test_encode_batch_pads_with_blank() -> None:
    vocab = CharVocab.build(TELUGU)
    targets, lens = vocab.encode_batch(["నమ", "తెలుగు"])
    assert lens.tolist() == [2, 6]
    assert targets.shape == (2, 6) and targets.dtype == torch.long
    assert targets[0, 2:].tolist() == [BLANK_ID] * 4
    assert vocab.decode(targets[1].tolist()) == "తెలుగు"


def test_save_load_round_trip(tmp_path) -> None:
    vocab = CharVocab.build(TELUGU)
    path = tmp_path / "vocab.json"
    vocab.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"], "no temporary file left"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["tokens"][:2] == ["<blank>", "<unk>"]
    loaded = CharVocab.load(path)
    assert loaded == vocab
    assert loaded.decode(vocab.encode("నమస్కారం")) == "నమస్కారం"


def test_load_rejects_reordered_tokens(tmp_path) -> None:
    data = CharVocab.build(TELUGU).to_dict()
    data["tokens"][2], data["tokens"][3] = data["tokens"][3], data["tokens"][2]
    with pytest.raises(ValueError, match="code-point order"):
        CharVocab.from_dict(data)
    with pytest.raises(ValueError, match="format"):
        CharVocab.from_dict({"tokens": data["tokens"]})


def test_shared_labels_fold_scripts_onto_one_set_and_decode_in_any_script(tmp_path) -> None:
    telugu, kannada, tamil, hindi = "కమల", "ಕಮಲ", "கமல", "कमल"  # the same word, letter for letter
    vocab = CharVocab.build([telugu, kannada, tamil, hindi + " " + telugu], shared=True, script="telugu")
    assert len(vocab) == 2 + 4  # blank, unk, space and three letters: one label per letter across scripts
    ids = vocab.encode(kannada)
    assert ids == vocab.encode(telugu) == vocab.encode(tamil) == vocab.encode(hindi)
    assert vocab.decode(ids) == telugu  # the vocabulary's own script by default
    assert vocab.decode(ids, "kannada") == kannada and vocab.decode(ids, "devanagari") == hindi
    word = "నమస్కారం"  # vowel signs, virama and anusvara fold too
    assert CharVocab.build([word], shared=True).decode(CharVocab.build([word], shared=True).encode(word)) == word
    vocab.save(tmp_path / "v.json")
    again = CharVocab.load(tmp_path / "v.json")
    assert again == vocab and again.shared and again.decode(ids) == telugu
    separate = CharVocab.build([telugu, kannada])
    assert not separate.shared and len(separate) == 2 + 1 + 6 and separate.encode(telugu) != separate.encode(kannada)
    with pytest.raises(ValueError, match="unknown script"):
        vocab.decode(ids, "latin")
