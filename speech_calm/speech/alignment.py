"""Cross-attention alignment: which audio frames each output token attended to, as a matrix and as a PNG.

For every generated token we take the bridges' attention probabilities of the query that *predicted* it (the
position before the token, as whisper's timing.py does), averaged over heads and over bridges: a row over
m_A positions (frames after the bridges' frame stacking) that sums to 1. One teacher-forced forward of
prompt + tokens inside `Composition.record_attention` gives every row at once, so decoding itself is
untouched and the plot costs one extra forward per segment, only when asked for.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from speech_calm.core.composition import Composition
from speech_calm.core.tower import TowerOutput
from speech_calm.speech.model import TOWER, SpeechModel

__all__ = ["AlignedSegment", "check_alignable", "plot_alignment", "token_attention"]

MAX_PLOTTED_TOKENS = 150  # beyond this a figure is unreadable; the title says when tokens were left out


def check_alignable(speech: SpeechModel) -> None:
    """Raise a clear error when the model has no cross-attention to show (the prefix baseline)."""
    if not isinstance(speech.model, Composition):
        raise ValueError(
            "alignment plots need CALM cross-attention bridges, but this run uses the prefix projector "
            "(compose.bridge.type=prefix), which has no cross-attention to show"
        )


@torch.no_grad()
def token_attention(speech: SpeechModel, states: TowerOutput, task: str, tokens: Sequence[int]) -> np.ndarray:
    """Attention of each generated token over the audio, for ONE item.

    states: m_A output for that item, batch size 1 (padding frames allowed, they are cut off).
    Returns (len(tokens), S) float32 rows summing to 1, S = real m_A frames / the bridges' frame stack.
    """
    check_alignable(speech)
    model: Composition = speech.model  # type: ignore[assignment]
    if states.mask.shape[0] != 1:
        raise ValueError(f"token_attention takes one item, got a batch of {states.mask.shape[0]}")
    prompt = speech.prompt_ids(task)
    ids = torch.tensor([list(prompt) + list(tokens)], device=speech.device)
    with model.record_attention() as records:
        model(ids, tower_outputs={TOWER: states}, logits_to_keep=1, **speech.forced_kwargs([tokens], ids.shape[1]))
    p, n = len(prompt), len(tokens)
    bridges = records[TOWER]
    # query p-1+j predicts token j; probs per bridge (1, H, T, S') → mean over heads → (n, S')
    rows = torch.stack([calls[0][0, :, p - 1 : p - 1 + n].float().mean(0) for calls in bridges]).mean(0)
    frames = int(states.mask[0].sum())
    real = math.ceil(frames / model.bridges[TOWER][0].frame_stack)
    return rows[:, :real].cpu().numpy().astype(np.float32)


@dataclass
class AlignedSegment:
    """One segment's alignment: `matrix` (tokens, S) spread evenly over [start, end] seconds."""

    start: float
    end: float
    matrix: np.ndarray
    labels: list[str]


@lru_cache(maxsize=1)
def packaged_fonts() -> tuple[str, ...]:
    """Font files of the installed `fontpkg` packages (Noto Sans Telugu, Devanagari, Tamil: dependencies of
    this project), made known to matplotlib once, so that tokens in those scripts are drawn as text."""
    from importlib import import_module
    from importlib.metadata import entry_points

    from matplotlib import font_manager

    files = []
    for entry in entry_points(group="fontpkg.family"):
        try:
            root = Path(import_module(entry.value).ROOT)
        except (ImportError, AttributeError):
            continue  # a broken font package draws nothing: the label is numbered instead
        for path in sorted(root.glob("files/*.[ot]tf")):
            font_manager.fontManager.addfont(str(path))
            files.append(str(path))
    return tuple(files)


@lru_cache(maxsize=64)
def _font_covering(chars: frozenset[str]) -> str | None:
    """The file of an installed font that has glyphs for all `chars`, preferring matplotlib's default."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    packaged_fonts()

    default = font_manager.findfont(font_manager.FontProperties())
    # "Last Resort" fonts map every code point to a placeholder box: they cover everything and show nothing
    fonts = {f.fname for f in font_manager.fontManager.ttflist if "last resort" not in f.name.lower()}
    candidates = [default] + sorted(fonts - {default})
    needed = {ord(c) for c in chars}
    for fname in candidates:
        try:
            if needed <= set(FT2Font(fname).get_charmap()):
                return fname
        except (OSError, RuntimeError):
            continue
    return None


def plot_alignment(path: str | os.PathLike, pieces: Sequence[AlignedSegment], title: str) -> Path:
    """Draw the segments' token-by-frame attention on one time axis and save a PNG atomically.

    Tokens run down the y axis in output order, audio time along x; each segment's block sits at its own
    place in the recording. Token labels are their text where an installed font can draw it, else `#k`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.font_manager import FontProperties

    total = sum(len(p.labels) for p in pieces)
    kept, budget = [], MAX_PLOTTED_TOKENS
    for piece in pieces:
        if budget <= 0:
            break
        n = min(budget, len(piece.labels))
        kept.append(AlignedSegment(piece.start, piece.end, piece.matrix[:n], piece.labels[:n]))
        budget -= n
    shown = sum(len(p.labels) for p in kept)
    labels = [label for p in kept for label in p.labels]
    fonts = [_font_covering(frozenset(label)) if label else None for label in labels]
    # a label no installed font can draw is numbered instead of shown as boxes
    labels = [label if font else f"#{k}" for k, (label, font) in enumerate(zip(labels, fonts))]

    fig, ax = plt.subplots(figsize=(11, 1.8 + 0.17 * max(shown, 4)))
    vmax = max([float(p.matrix.max()) for p in kept if p.matrix.size] or [1.0])  # one colour scale for all
    row = 0
    image = None
    for piece in kept:
        n = len(piece.labels)
        if n and piece.matrix.shape[1]:
            image = ax.imshow(piece.matrix, aspect="auto", cmap="viridis", interpolation="nearest", vmin=0, vmax=vmax,
                              extent=(piece.start, piece.end, row + n - 0.5, row - 0.5))
        ax.axvline(piece.start, color="white", lw=0.6, ls="--")
        row += n
    ax.set_ylim(max(row, 1) - 0.5, -0.5)
    if kept:
        ax.set_xlim(kept[0].start, kept[-1].end)
    ax.set_yticks(range(row))
    ax.set_yticklabels(labels, fontsize=7)
    for tick, font in zip(ax.get_yticklabels(), fonts):
        if font:
            tick.set_fontproperties(FontProperties(fname=font, size=7))
    ax.set_xlabel("audio time (s)")
    ax.set_ylabel("output token")
    note = f" (first {shown} of {total} tokens)" if shown < total else ""
    ax.set_title(title + note, fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01, label="attention")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fig.savefig(tmp, dpi=90, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path
