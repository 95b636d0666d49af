"""CharVocab: the character vocabulary of the Conformer's CTC head.

One vocabulary covers several Indic scripts (Telugu, Devanagari, Kannada, Tamil by default) plus the space, so
one encoder can be trained on the mixed speech found in Telugu districts. Ids are fixed by construction:

    0  <blank>   the CTC blank (never produced by `encode`, dropped by `decode`)
    1  <unk>     any character outside the vocabulary
    2… the characters, in code-point order (sorted, so the same transcripts always give the same ids)

Characters are Unicode code points, not graphemes: a consonant, its vowel sign (e.g. U+0C3E) and a virama
(U+0C4D) are separate tokens, so "నమస్కారం" is 8 tokens and decodes back exactly. The vocabulary does not
normalise text (NFC, zero-width characters, punctuation): `speech_calm.speech.indic` does that before transcripts get
here, and decoding must give back exactly what was encoded.

Shared labels (`shared=True`, what the encoder stage builds): the Brahmic blocks of Unicode are laid out in
parallel (ISCII), so క U+0C15, ಕ U+0C95, க U+0B95 and क U+0915 sit at the same offset in their blocks. A shared
vocabulary folds every script onto one set of labels by that offset: the languages then share what sounds
alike, instead of splitting the CTC head four ways (on our corpus, four separate scripts slowed Telugu's
learning from 53% to 80% dev CER after 100 steps). `decode(ids, script)` writes the labels back in the
script asked for (default: the vocabulary's `script`).

Unknown characters: `encode` maps them to `<unk>` (the target keeps its length, so CTC still sees something
there); `decode` renders `<unk>` as U+FFFD, one character, so it costs one character error in CER.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

log = logging.getLogger(__name__)

BLANK_TOKEN = "<blank>"

UNK_TOKEN = "<unk>"

BLANK_ID = 0

UNK_ID = 1

UNK_CHAR = "\ufffd"  # what decode() writes for <unk>

SPACE = " "

_FORMAT = "speech_calm.CharVocab"

_VERSION = 2  # 2 added shared labels; version 1 files load as unshared

_FOLD_BASE = 0x0900  # shared labels are written as the Devanagari block's code points

# Unicode blocks of the scripts a vocabulary may hold (inclusive code-point ranges).
SCRIPT_BLOCKS: dict[str, tuple[int, int]] = {
    "telugu": (0x0C00, 0x0C7F),
    "devanagari": (0x0900, 0x097F),
    "kannada": (0x0C80, 0x0CFF),
    "tamil": (0x0B80, 0x0BFF),
}

DEFAULT_SCRIPTS: tuple[str, ...] = ("telugu", "devanagari", "kannada", "tamil")


def fold(ch: str) -> str:
    """A character of any known Brahmic block as the label at the same block offset (Devanagari code points)."""
    cp = ord(ch)
    for lo, hi in SCRIPT_BLOCKS.values():
        if lo <= cp <= hi:
            return chr(_FOLD_BASE + cp - lo)
    return ch


def unfold(label: str, script: str) -> str:
    """Inverse of `fold` for one script: the label (a Devanagari-block code point) as that script's character."""
    cp = ord(label)
    if _FOLD_BASE <= cp < _FOLD_BASE + 0x80:
        return chr(SCRIPT_BLOCKS[script][0] + cp - _FOLD_BASE)
    return label


def _in_scripts(ch: str, scripts: Sequence[str]) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in (SCRIPT_BLOCKS[s] for s in scripts))


class CharVocab:
    """Character-level CTC vocabulary (blank = 0, <unk> = 1, then characters in code-point order).

    Build it with `CharVocab.build(train_texts)`, persist it with `save(path)` / `CharVocab.load(path)`.
    """

    def __init__(self, chars: Iterable[str], shared: bool = False, script: str = "telugu") -> None:
        """`chars`: the vocabulary's characters (one code point each); sorted and deduplicated here. `shared`:
        the characters are shared labels (`fold`) and `script` is what `decode` writes by default."""
        if script not in SCRIPT_BLOCKS:
            raise ValueError(f"unknown script {script!r}; known: {sorted(SCRIPT_BLOCKS)}")
        self.shared = shared
        self.script = script
        chars = sorted({fold(c) for c in chars} if shared else set(chars))
        for ch in chars:
            if len(ch) != 1:
                raise ValueError(f"CharVocab entries must be single characters, got {ch!r}")
        self._chars: list[str] = chars
        self._id_of: dict[str, int] = {ch: i + 2 for i, ch in enumerate(chars)}

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(cls, texts: Iterable[str], scripts: Sequence[str] = DEFAULT_SCRIPTS, shared: bool = False,
              script: str = "telugu") -> CharVocab:
        """The vocabulary of the characters seen in `texts` that belong to `scripts`, plus the space.

        Characters outside those scripts (Latin letters, digits, punctuation, zero-width joiners) are left
        out, so they encode to <unk>; they are logged with their counts, since they usually mean the
        transcripts were not normalised.
        """
        unknown = [s for s in scripts if s not in SCRIPT_BLOCKS]
        if unknown:
            raise ValueError(f"unknown script(s) {unknown}; known: {sorted(SCRIPT_BLOCKS)}")
        counts = Counter(ch for text in texts for ch in text)
        kept = {ch for ch in counts if _in_scripts(ch, scripts)}
        skipped = {ch: n for ch, n in counts.items() if ch not in kept and ch != SPACE}
        if skipped:
            shown = ", ".join(
                f"{ch!r} (U+{ord(ch):04X} {unicodedata.name(ch, '?')}) x{n}"
                for ch, n in sorted(skipped.items(), key=lambda kv: -kv[1])[:20]
            )
            log.warning("CharVocab.build: %d character type(s) outside %s map to <unk>: %s",
                        len(skipped), list(scripts), shown)
        return cls(kept | {SPACE}, shared=shared, script=script)

    # ------------------------------------------------------------------ mapping

    def __len__(self) -> int:
        """Number of ids, blank and <unk> included (= the CTC head's output size)."""
        return len(self._chars) + 2

    @property
    def chars(self) -> list[str]:
        """The characters in id order (id = index + 2)."""
        return list(self._chars)

    def encode(self, text: str) -> list[int]:
        """Ids of the characters of `text`, one per code point; unknown characters give UNK_ID."""
        if self.shared:
            return [self._id_of.get(fold(ch), UNK_ID) for ch in text]
        return [self._id_of.get(ch, UNK_ID) for ch in text]

    def decode(self, ids: Iterable[int], script: str | None = None) -> str:
        """Text of `ids`. Blanks are dropped, <unk> becomes U+FFFD; no CTC collapsing (see ctc_greedy_decode).
        A shared vocabulary writes its labels in `script` (default: the vocabulary's)."""
        if self.shared:
            target = script or self.script
            if target not in SCRIPT_BLOCKS:
                raise ValueError(f"unknown script {target!r}; known: {sorted(SCRIPT_BLOCKS)}")
            return "".join(unfold(c, target) for c in self._decode(ids))
        return self._decode(ids)

    def _decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == BLANK_ID:
                continue
            if i == UNK_ID:
                out.append(UNK_CHAR)
            elif 2 <= i < len(self):
                out.append(self._chars[i - 2])
            else:
                raise ValueError(f"id {i} is outside this vocabulary (size {len(self)})")
        return "".join(out)

    def encode_batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC targets for a batch: (B, U_max) long, padded with BLANK_ID, and lengths (B,) long."""
        encoded = [self.encode(t) for t in texts]
        lens = torch.tensor([len(e) for e in encoded], dtype=torch.long)
        width = max((len(e) for e in encoded), default=0)
        targets = torch.full((len(encoded), max(1, width)), BLANK_ID, dtype=torch.long)
        for b, e in enumerate(encoded):
            targets[b, : len(e)] = torch.tensor(e, dtype=torch.long)
        return targets, lens

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict:
        """JSON-ready form: the tokens in id order, with the special tokens first."""
        return {"format": _FORMAT, "version": _VERSION, "shared": self.shared, "script": self.script,
                "tokens": [BLANK_TOKEN, UNK_TOKEN, *self._chars]}

    @classmethod
    def from_dict(cls, data: dict) -> CharVocab:
        """Inverse of `to_dict`; checks the format, the special tokens and the order of the ids."""
        if data.get("format") != _FORMAT or data.get("version") not in (1, _VERSION):
            raise ValueError(f"not a {_FORMAT} v{_VERSION} vocabulary: format={data.get('format')!r}, "
                             f"version={data.get('version')!r}")
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or tokens[:2] != [BLANK_TOKEN, UNK_TOKEN]:
            raise ValueError(f"vocabulary tokens must start with {[BLANK_TOKEN, UNK_TOKEN]}")
        vocab = cls(tokens[2:], shared=bool(data.get("shared", False)), script=data.get("script", "telugu"))
        if vocab._chars != tokens[2:]:
            # Ids are the saved order; a file that is not sorted/unique would silently renumber them.
            raise ValueError("vocabulary characters are not unique and in code-point order")
        return vocab

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as UTF-8 JSON, atomically (temporary file in the same folder, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, ensure_ascii=False, indent=1)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharVocab:
        """Read a vocabulary written by `save`."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, CharVocab) and self._chars == other._chars and self.shared == other.shared
                and self.script == other.script)

    def __repr__(self) -> str:
        return f"CharVocab(size={len(self)})"
