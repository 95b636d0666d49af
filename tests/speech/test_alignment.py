"""Alignment plots draw their tokens in their own script: the fonts this project installs cover Telugu,
Devanagari and Tamil, so those labels are text, not numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speech_calm.speech.alignment import AlignedSegment, _font_covering, packaged_fonts, plot_alignment


def test_installed_fonts_cover_the_scripts_of_the_corpus() -> None:
    assert {Path(f).name.split("[")[0] for f in packaged_fonts()} >= {
        "NotoSansTelugu", "NotoSansDevanagari", "NotoSansTamil"}
    for word in ("తెలుగు", "हिन्दी", "தமிழ்"):
        assert _font_covering(frozenset(word)) is not None, word


def test_a_telugu_plot_labels_its_tokens_in_telugu(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    import matplotlib.axes

    shown: list[str] = []
    original = matplotlib.axes.Axes.set_yticklabels

    def record(self, labels, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        shown.extend(labels)
        return original(self, labels, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_yticklabels", record)
    piece = AlignedSegment(start=0.0, end=1.0, labels=["తె", "లు", "గు"], matrix=np.random.rand(3, 10))
    assert plot_alignment(tmp_path / "a.png", [piece], "test").stat().st_size > 1000
    assert shown == ["తె", "లు", "గు"]  # not "#0", "#1", "#2"
