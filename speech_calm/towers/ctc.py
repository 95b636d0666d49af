"""CTC around a speech tower: a Hugging Face encoder with a CTC head (`HFCTCEncoder`, what the encoder stage
trains from an HF source), and CTC compression of a tower's states (Gaido et al., 2021): average the runs of
consecutive frames that greedy CTC decoding gives the same label.

A CTC-trained encoder emits one label (or blank) per frame; a run of equal labels is one character (or one
pause). Averaging each run turns ~25 frames per second into roughly one position per character or pause, so
the bridges attend over a sequence about as long as the text they write, whose positions already line up with
its characters. The tower stays frozen: this only re-pools its outputs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speech_calm.core.checkpoint import load_tensors, save_tensors
from speech_calm.core.tower import AugmentingTower, TowerOutput
from speech_calm.towers.conformer import MODEL_TYPE, ConformerEncoder, ctc_greedy_decode
from speech_calm.towers.hf import HFSpeechTower
from speech_calm.towers.load import HEAD_NAME, VOCAB_NAME, load_speech_tower
from speech_calm.towers.vocab import BLANK_ID, CharVocab


def compress_runs(out: TowerOutput, labels: torch.Tensor, layers: list[int] | None = None,
                  blank: int = 0) -> TowerOutput:
    """Average runs of equal `labels` (B, S) over the real frames of `out`.

    Returns states (B, R, D) for `layers` (default all; other layers None), a mask (B, R), R = most runs in
    the batch, and `positions` (B, R): a run of character i is at 2i, a run of `blank` before it at 2i-1
    (the transcript position each memory slot stands for, as greedy CTC reads it). A padded item gives the
    same runs as alone: runs are cut at the end of its real frames.
    """
    mask = out.mask
    b, s = labels.shape
    change = torch.ones_like(mask)
    change[:, 1:] = labels[:, 1:] != labels[:, :-1]
    change = change & mask
    run = (change.long().cumsum(-1) - 1).clamp(min=0)  # (B, S) run index of every frame
    runs = change.sum(-1)  # (B,)
    width = max(1, int(runs.max()))
    weight = mask.float()
    count = torch.zeros(b, width, device=mask.device).scatter_add_(1, run, weight)  # frames per run
    hidden: list[torch.Tensor | None] = []
    for i, h in enumerate(out.hidden_states):
        if h is None or (layers is not None and i not in layers):
            hidden.append(None)
            continue
        total = torch.zeros(b, width, h.shape[-1], device=h.device, dtype=h.dtype)
        total.scatter_add_(1, run[..., None].expand(-1, -1, h.shape[-1]), h * weight[..., None].to(h.dtype))
        hidden.append(total / count.clamp(min=1)[..., None].to(h.dtype))
    new_mask = torch.arange(width, device=mask.device)[None, :] < runs[:, None]
    # every real frame of a run has the run's label; padded frames write to a spare column that is dropped
    run_label = torch.full((b, width + 1), blank, dtype=labels.dtype, device=labels.device)
    run_label = run_label.scatter(1, torch.where(mask, run, width), labels)[:, :width]
    is_char = (run_label != blank) & new_mask
    chars_before = is_char.long().cumsum(-1) - is_char.long()  # characters that precede each run
    positions = 2 * chars_before - (~is_char).long()  # character i: 2i; a pause before it: 2i - 1
    return TowerOutput(tuple(hidden), new_mask, positions=positions)  # type: ignore[arg-type]


class CTCCompressedTower(AugmentingTower):
    """A frozen CTC speech tower whose outputs are CTC-compressed (`compress_runs`).

    Args:
        tower: a speech tower with a CTC head (our `ConformerEncoder`: `ctc_head` over its last layer).
    """

    modality = "speech"

    def __init__(self, tower: AugmentingTower) -> None:
        super().__init__()
        head = getattr(tower, "ctc_head", None)
        if head is None:
            raise ValueError(f"{type(tower).__name__} has no CTC head; CTC compression needs one")
        self.tower = tower
        self.num_layers = tower.num_layers
        self.hidden_size = tower.hidden_size

    @property
    def frame_rate_hz(self) -> float | None:
        return None  # positions are runs of frames, not fixed-rate frames

    def forward(self, *args: Any, **kwargs: Any) -> TowerOutput:
        return self.with_logits(*args, **kwargs)[0]

    def with_logits(self, *args: Any, **kwargs: Any) -> tuple[TowerOutput, torch.Tensor, torch.Tensor]:
        """The compressed states, and the CTC logits (B, S, V) and real frames (B,) they were compressed by."""
        out = self.tower(*args, **kwargs)
        logits = self.tower.ctc_head(out.hidden_states[-1])  # (B, S, V)
        return compress_runs(out, logits.argmax(-1)), logits, out.mask.sum(-1)


def ctc_outputs(tower: AugmentingTower, audio: torch.Tensor,
                audio_lens: torch.Tensor) -> tuple[TowerOutput, torch.Tensor | None, torch.Tensor | None]:
    """m_A's states as the bridges read them, with its CTC logits (B, S, V) and real frames (B,) from the same
    forward; (states, None, None) for a tower without a CTC head."""
    if isinstance(tower, CTCCompressedTower):
        return tower.with_logits(audio, audio_lens)
    out = tower(audio, audio_lens)
    head = getattr(tower, "ctc_head", None)
    if head is None:
        return out, None, None
    return out, head(out.hidden_states[-1]), out.mask.sum(-1)



class HFCTCEncoder(nn.Module):
    """An HF speech encoder with a new CTC head: the same methods as `ConformerEncoder` (ctc_loss,
    greedy_decode, save_pretrained) so the stage treats both alike."""

    def __init__(self, tower: HFSpeechTower, vocab: CharVocab) -> None:
        super().__init__()
        self.tower = tower
        self.vocab = vocab
        self.ctc_head = nn.Linear(tower.hidden_size, len(vocab))

    def ctc_logits(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (B, T), audio_lens (B,) → logits (B, S, V) from the last layer, lengths (B,)."""
        out = self.tower(audio, audio_lens)
        return self.ctc_head(out.hidden_states[-1]), out.mask.sum(-1)

    def ctc_loss(self, audio: torch.Tensor, audio_lens: torch.Tensor, targets: torch.Tensor,
                 target_lens: torch.Tensor) -> torch.Tensor:
        logits, lens = self.ctc_logits(audio, audio_lens)
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # (S, B, V)
        return F.ctc_loss(log_probs, targets.to(logits.device), lens, target_lens.to(logits.device),
                          blank=BLANK_ID, zero_infinity=True)

    @torch.no_grad()
    def greedy_decode(self, audio: torch.Tensor, audio_lens: torch.Tensor,
                      scripts: Sequence[str] | None = None) -> list[str]:
        logits, lens = self.ctc_logits(audio, audio_lens)
        paths = ctc_greedy_decode(logits, lens)
        return [self.vocab.decode(ids, scripts[i] if scripts else None) for i, ids in enumerate(paths)]

    def save_pretrained(self, directory: str | Path) -> None:
        """The HF model and feature extractor (a speech tower on their own), plus the CTC head and vocabulary."""
        directory = Path(directory)
        self.tower.model.save_pretrained(directory)
        self.tower.feature_extractor.save_pretrained(directory)
        save_tensors(self.ctc_head.state_dict(), directory / HEAD_NAME)
        self.vocab.save(directory / VOCAB_NAME)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> HFCTCEncoder:
        directory = Path(directory)
        tower = load_speech_tower(str(directory), device)
        model = cls(tower, CharVocab.load(directory / VOCAB_NAME))  # type: ignore[arg-type]
        model.ctc_head.load_state_dict(load_tensors(directory / HEAD_NAME))
        return model.to(device).eval()


def load_ctc_model(directory: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """m_A with its CTC head, as the encoder stage saved it (our Conformer or an HF encoder)."""
    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    if config.get("model_type") == MODEL_TYPE:
        return ConformerEncoder.from_pretrained(directory, device)
    return HFCTCEncoder.from_pretrained(directory, device)
