"""Token batches for causal LMs: prompts and targets padded, labels on targets, length buckets.

Rows are left-padded (`prompt + target`, targets flush right) so that training and generation share one
layout and the loss needs logits for the last `T_target + 1` positions only: with Gemma's 262k vocabulary the
LM head would otherwise dominate the step. Length buckets group rows of similar length, in an order that
depends only on (seed, epoch): a resumed run sees the batches an uninterrupted one would.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

IGNORE_INDEX = -100  # label of positions without a loss (cross_entropy's ignore_index)


def bucket_batches(
    durations: Sequence[float],
    batch_size: int,
    max_batch_seconds: float | None,
    seed: int,
    epoch: int,
    shuffle: bool = True,
) -> list[list[int]]:
    """Indices grouped into batches of similar duration: at most `batch_size` items and, when given, at most
    `max_batch_seconds` of padded audio (longest item × items). Deterministic for (seed, epoch)."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = sorted(range(len(durations)), key=lambda i: (durations[i], rng.random() if shuffle else i))
    batches, current, longest = [], [], 0.0
    for i in order:
        longer = max(longest, durations[i])
        too_many = len(current) >= batch_size
        too_long = max_batch_seconds is not None and current and longer * (len(current) + 1) > max_batch_seconds
        if current and (too_many or too_long):
            batches.append(current)
            current, longer = [], durations[i]
        current.append(i)
        longest = longer
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


@dataclass
class LMBatch:
    """Left-padded rows for the anchor.

    input_ids, attention_mask: (B, L). labels: (B, K) targets for the logits of the last K positions
    (`logits_to_keep=K`), IGNORE_INDEX where there is no target.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    @property
    def logits_to_keep(self) -> int:
        return self.labels.shape[1]

    def to(self, device: torch.device | str) -> LMBatch:
        return LMBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def lm_batch(prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], pad_id: int) -> LMBatch:
    """Rows `prompt + target`, left-padded; labels cover the target tokens only.

    The logit at position p predicts token p+1, so K = longest target + 1 kept positions cover every target;
    the last kept logit (predicting past the end) has no label.
    """
    rows = [list(p) + list(t) for p, t in zip(prompts, targets)]
    length = max(len(r) for r in rows)
    k = max(len(t) for t in targets) + 1
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), k), IGNORE_INDEX, dtype=torch.long)
    for i, (row, target) in enumerate(zip(rows, targets)):
        ids[i, length - len(row) :] = torch.tensor(row)
        mask[i, length - len(row) :] = 1
        if target:
            labels[i, k - 1 - len(target) : k - 1] = torch.tensor(list(target))
    return LMBatch(ids, mask, labels)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts for generation: (B, L) ids and attention mask, left-padded."""
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, length - len(p) :] = torch.tensor(list(p))
            mask[i, length - len(p) :] = 1
    return ids, mask


def chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    """Consecutive slices of at most `size` items."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
