"""speech_calm.speech.indic: Vaani transcript normalisation, code-switched form, script checks."""

import unicodedata

import pytest

from speech_calm.speech.indic import (
    code_switched,
    language_code,
    language_script,
    normalize,
    script_fraction,
    strip_annotations,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        # English gloss in braces, event tag, trailing "--", ZWNJ inside a word
        ("వాచ్\u200cమన్ {watchman} <noise> వచ్చాడు --", "వాచ్మన్ వచ్చాడు"),
        # opening/closing tags are dropped, the words between them are speech and stay
        ("<pause> అవును </pause> సరే", "అవును సరే"),
        # transcriber comments in square brackets and parentheses
        ("నేను [unclear] ఇంటికి (laughs) వెళ్తాను", "నేను ఇంటికి వెళ్తాను"),
        # punctuation and the Devanagari danda become spaces; whitespace collapses
        ("నమస్కారం,   మీరు ఎలా ఉన్నారు?!", "నమస్కారం మీరు ఎలా ఉన్నారు"),
        ("मेरा नाम राम है। आप?", "मेरा नाम राम है आप"),
        # zero-width space, ZWJ, BOM and soft hyphen are removed
        ("\ufeffరా\u200bము\u200d\u00ad", "రాము"),
        ("", ""),
        ("<noise> {hmm} --", ""),
    ],
)
def test_normalize_examples(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_normalize_keeps_vowel_signs_and_viramas() -> None:
    # కి = KA + VOWEL SIGN I; క్ష = KA + VIRAMA + SSA; ం = anusvara: all combining marks or signs.
    text = "కిరణ్ క్షమించండి"
    out = normalize(text)
    assert out == text
    marks = [ch for ch in out if unicodedata.category(ch).startswith("M")]
    assert "\u0c3f" in marks and "\u0c4d" in marks and "\u0c02" in marks


def test_normalize_applies_nfc() -> None:
    # Telugu AI length mark: E + U+0C56 composes to the vowel sign AI under NFC.
    assert normalize("క\u0c46\u0c56") == "క\u0c48"


def test_code_switched_replaces_glossed_words() -> None:
    assert code_switched("నా వాచ్\u200cమన్ {watchman} వచ్చాడు --") == "నా watchman వచ్చాడు"
    # a multi-word gloss replaces as many native words
    assert code_switched("బస్ స్టాండ్ {bus stand} ఎక్కడ ఉంది?") == "bus stand ఎక్కడ ఉంది"
    # suffixes stay attached to the native word they were written with
    assert code_switched("<horn> హాస్పిటల్\u200cకు {hospital} వెళ్ళాడు.") == "hospital వెళ్ళాడు"
    # two glosses in a row never eat an earlier English word
    assert code_switched("టీవీ {TV} ఫోన్ {phone}") == "TV phone"
    assert code_switched("no glosses here") == "no glosses here"


def test_strip_annotations_keeps_punctuation_for_tts() -> None:
    assert strip_annotations("<noise> నా ఫోన్ {phone} పని చేయడం లేదు. --") == "నా ఫోన్ పని చేయడం లేదు."


def test_script_fraction() -> None:
    assert script_fraction("నమస్కారం", "telugu") == 1.0
    assert script_fraction("hello", "telugu") == 0.0
    assert script_fraction("నమస్కారం hello", "latin") == pytest.approx(5 / 13)
    # digits, punctuation and spaces count neither way; a language name maps to its script
    assert script_fraction("राम 123 !", "hindi") == 1.0
    assert script_fraction("ಕನ್ನಡ", "kannada") == 1.0
    assert script_fraction("தமிழ்", "tamil") == 1.0
    assert script_fraction("123 ...", "telugu") == 0.0


def test_language_tables() -> None:
    assert language_code("Telugu") == "te"
    assert language_script("hindi") == "devanagari"
    with pytest.raises(ValueError, match="unknown language"):
        language_code("klingon")
    with pytest.raises(ValueError, match="unknown language"):
        script_fraction("x", "klingon")
