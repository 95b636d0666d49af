"""Runaway output: a unit (word or characters) repeated back to back, found in a decoded text."""

from __future__ import annotations

from collections.abc import Sequence


def _longest_run(items: Sequence, max_unit: int, min_repeats: int) -> int:
    """Items (words of a list, characters of a string) covered by the longest run of a unit of 1..`max_unit`
    items repeated back to back at least `min_repeats` times; 0 when there is none."""
    best = 0
    for n in range(1, max_unit + 1):
        i = 0
        while i + 2 * n <= len(items):
            reps = 1
            while items[i + reps * n : i + (reps + 1) * n] == items[i : i + n]:
                reps += 1
            if reps >= min_repeats:
                best = max(best, reps * n)
                i += reps * n
            else:
                i += 1
    return best


def repeated_run(text: str, max_unit: int = 4) -> int:
    """Words covered by the longest run of a unit of 1..`max_unit` words repeated back to back, counting
    only runs of >= 3 repeats ("a b a b a b" → 6); 0 when nothing loops."""
    return _longest_run(text.split(), max_unit, 3)


def repeated_chars(text: str, max_unit: int = 4) -> int:
    """Characters covered by the longest run of a unit of 1..`max_unit` characters repeated back to back,
    counting only runs of >= 4 repeats ("కావాలిలిలిలిలి" → 10); 0 when nothing loops. A transcript written
    one character per token can loop inside a word, which `repeated_run` does not see."""
    return _longest_run(text, max_unit, 4)


def looped(text: str) -> bool:
    """Output that runs in a loop: some unit of words repeated back to back over at least 6 words, or a unit
    of a few characters over at least 12 characters."""
    return repeated_run(text) >= 6 or repeated_chars(text) >= 12


def loop_size(text: str) -> tuple[int, int]:
    """How much `text` loops, to compare two decodings: words in word loops first, then characters."""
    return repeated_run(text), repeated_chars(text)
