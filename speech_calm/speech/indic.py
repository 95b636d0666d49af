"""Indic transcript text: Vaani tag handling, normalisation for ASR targets, and script checks.

Vaani transcripts are verbatim native script with annotations (REFERENCE.md):

* English words are written in the native script and followed by the English in braces,
  ``వాచ్‌మన్ {watchman}``;
* event tags ``<noise>``, ``<horn>``, ``<pause> ... </pause>``; some lines end in ``--``;
* zero-width joiners/non-joiners that only change glyph shaping.

Three forms are derived from one raw transcript:

* :func:`normalize` — the ASR target: NFC, annotations dropped, zero-width characters removed,
  punctuation turned into spaces, whitespace collapsed.  Combining marks (vowel signs, viramas,
  anusvara, nukta) are never removed: they are letters of the word, not decoration.
* :func:`code_switched` — the same, but every braced English gloss replaces the native-script words
  it glosses, so ``వాచ్‌మన్ {watchman} వచ్చాడు`` becomes ``watchman వచ్చాడు``.
* the raw text itself, kept as ``text_raw``.

:func:`script_fraction` measures how much of a text is in a given script; data preparation uses it
to drop rows transcribed in the wrong script and evaluation uses it as the "script fidelity" metric.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "SCRIPTS",
    "LANGUAGE_SCRIPT",
    "LANGUAGE_CODES",
    "ZERO_WIDTH",
    "normalize",
    "code_switched",
    "strip_annotations",
    "script_of",
    "script_fraction",
    "language_code",
    "language_script",
]

# Unicode blocks per script, as inclusive code point ranges.  Only letters and combining marks are
# classified (see `_is_letter`), so digits and punctuation inside a block (e.g. the Devanagari danda
# U+0964, Telugu digits) never count for or against a script.
SCRIPTS: dict[str, tuple[tuple[int, int], ...]] = {
    "telugu": ((0x0C00, 0x0C7F),),
    "devanagari": ((0x0900, 0x097F), (0xA8E0, 0xA8FF)),
    "kannada": ((0x0C80, 0x0CFF),),
    "tamil": ((0x0B80, 0x0BFF), (0x11FC0, 0x11FFF)),
    "malayalam": ((0x0D00, 0x0D7F),),
    "bengali": ((0x0980, 0x09FF),),
    "gujarati": ((0x0A80, 0x0AFF),),
    "gurmukhi": ((0x0A00, 0x0A7F),),
    "odia": ((0x0B00, 0x0B7F),),
    "arabic": ((0x0600, 0x06FF), (0x0750, 0x077F), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "latin": ((0x0041, 0x005A), (0x0061, 0x007A), (0x00C0, 0x024F), (0x1E00, 0x1EFF)),
}

# Lower-case English language name (the manifest's `language` value) -> script it is written in.
LANGUAGE_SCRIPT: dict[str, str] = {
    "telugu": "telugu",
    "hindi": "devanagari",
    "marathi": "devanagari",
    "nepali": "devanagari",
    "sanskrit": "devanagari",
    "kannada": "kannada",
    "tamil": "tamil",
    "malayalam": "malayalam",
    "bengali": "bengali",
    "gujarati": "gujarati",
    "punjabi": "gurmukhi",
    "odia": "odia",
    "urdu": "arabic",
    "english": "latin",
}

# Lower-case English language name -> ISO 639-1 code (used for ids, espeak voices, CLDR locales).
LANGUAGE_CODES: dict[str, str] = {
    "telugu": "te",
    "hindi": "hi",
    "marathi": "mr",
    "nepali": "ne",
    "sanskrit": "sa",
    "kannada": "kn",
    "tamil": "ta",
    "malayalam": "ml",
    "bengali": "bn",
    "gujarati": "gu",
    "punjabi": "pa",
    "odia": "or",
    "urdu": "ur",
    "english": "en",
}

# Characters that only affect rendering: ZWSP, ZWNJ, ZWJ, word joiner, BOM, soft hyphen.
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"

_ZERO_WIDTH_RE = re.compile(f"[{ZERO_WIDTH}]")

# Annotations.  Braces hold English glosses, angle brackets hold event tags (also closing tags such
# as </pause>), square brackets and parentheses hold transcriber comments.  Non-greedy and without
# nesting: Vaani never nests them, and a stray unmatched bracket is left for the punctuation step.
_BRACED_RE = re.compile(r"\{[^{}]*\}")

_TAG_RE = re.compile(r"<[^<>]*>")

_SQUARE_RE = re.compile(r"\[[^\[\]]*\]")

_PAREN_RE = re.compile(r"\([^()]*\)")

_DASHES_RE = re.compile(r"-{2,}")

_SPACE_RE = re.compile(r"\s+")


def _lookup(table: dict[str, str], language: str) -> str:
    try:
        return table[language.strip().lower()]
    except KeyError:
        known = ", ".join(sorted(table))
        raise ValueError(f"unknown language {language!r}; known languages: {known}") from None


def language_code(language: str) -> str:
    """ISO 639-1 code for an English language name (``"telugu"`` -> ``"te"``)."""
    return _lookup(LANGUAGE_CODES, language)


def language_script(language: str) -> str:
    """Name of the script a language is written in (``"hindi"`` -> ``"devanagari"``)."""
    return _lookup(LANGUAGE_SCRIPT, language)


def _drop_annotations(text: str, keep_braces: bool) -> str:
    """Remove tags, bracketed comments and ``--``; braces too unless ``keep_braces``."""
    if not keep_braces:
        text = _BRACED_RE.sub(" ", text)
    text = _TAG_RE.sub(" ", text)
    text = _SQUARE_RE.sub(" ", text)
    text = _PAREN_RE.sub(" ", text)
    return _DASHES_RE.sub(" ", text)


def _is_letter(ch: str) -> bool:
    # Letters (L*) and combining marks (M*): Indic vowel signs and viramas are marks, and they are
    # as much part of a word as the consonants they attach to.
    return unicodedata.category(ch)[0] in "LM"


def _punctuation_to_space(text: str) -> str:
    # Anything that is neither a letter, a mark, a digit nor whitespace becomes a space: this covers
    # ASCII punctuation, dandas, quotes, dashes and symbols without a hand-kept list.
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        out.append(ch if cat[0] in "LMN" or ch.isspace() else " ")
    return "".join(out)


def strip_annotations(raw: str) -> str:
    """Raw transcript minus tags, comments, ``--`` and braced glosses; punctuation kept.

    This is what a TTS engine should read aloud for a Vaani-style transcript.
    """
    text = unicodedata.normalize("NFC", raw)
    return _SPACE_RE.sub(" ", _drop_annotations(text, keep_braces=False)).strip()


def normalize(raw: str) -> str:
    """Normalise a Vaani-style transcript into an ASR target.

    >>> normalize("వాచ్‌మన్ {watchman} <noise> వచ్చాడు, అవును --")
    'వాచ్మన్ వచ్చాడు అవును'
    """
    text = unicodedata.normalize("NFC", raw)
    text = _drop_annotations(text, keep_braces=False)
    text = _ZERO_WIDTH_RE.sub("", text)
    text = _punctuation_to_space(text)
    # NFC again: removing a zero-width character can leave a sequence that now composes.
    text = unicodedata.normalize("NFC", text)
    return _SPACE_RE.sub(" ", text).strip()


def code_switched(raw: str) -> str:
    """Normalised transcript in which each braced English gloss replaces the words it glosses.

    A gloss of k words replaces the k native-script words just before it (Vaani writes the
    transliteration, then the English), so ``బస్ స్టాండ్ {bus stand}`` becomes ``bus stand``.
    English glosses keep their case.

    >>> code_switched("నా వాచ్‌మన్ {watchman} వచ్చాడు --")
    'నా watchman వచ్చాడు'
    """
    text = unicodedata.normalize("NFC", raw)
    text = _drop_annotations(text, keep_braces=True)
    # Split into plain-text runs and braced glosses, preserving order.
    words: list[str] = []
    pos = 0
    for match in _BRACED_RE.finditer(text):
        words.extend(normalize(text[pos : match.start()]).split())
        gloss = normalize(match.group(0)[1:-1]).split()
        if gloss:
            # Drop as many preceding native words as the gloss has words, but never an English word
            # that an earlier gloss put there.
            for _ in range(min(len(gloss), len(words))):
                if script_fraction(words[-1], "latin") == 1.0:
                    break
                words.pop()
            words.extend(gloss)
        pos = match.end()
    words.extend(normalize(text[pos:]).split())
    return " ".join(words)


def script_of(ch: str) -> str | None:
    """Name of the script (a key of :data:`SCRIPTS`) a character belongs to, or None."""
    cp = ord(ch)
    for name, ranges in SCRIPTS.items():
        for lo, hi in ranges:
            if lo <= cp <= hi:
                return name
    return None


def script_fraction(text: str, script: str) -> float:
    """Share of the letters (and combining marks) of ``text`` that are in ``script``.

    Digits, punctuation, spaces and annotations count neither way; a text without letters gives 0.0.
    ``script`` is a script name (``"telugu"``, ``"devanagari"``, ``"latin"`` ...) or a language name
    (``"hindi"``), which is mapped through :data:`LANGUAGE_SCRIPT`.
    """
    script = script.strip().lower()
    if script not in SCRIPTS:
        script = language_script(script)
    ranges = SCRIPTS[script]
    letters = in_script = 0
    for ch in unicodedata.normalize("NFC", text):
        if not _is_letter(ch):
            continue
        letters += 1
        cp = ord(ch)
        if any(lo <= cp <= hi for lo, hi in ranges):
            in_script += 1
    return in_script / letters if letters else 0.0
