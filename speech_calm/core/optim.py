"""How bridges (and baselines) are optimised: the loop's settings, AdamW groups, the schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class OptimConfig:
    """AdamW with linear warmup and cosine decay."""

    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.01  # AdamW decoupled weight decay (not applied to norms, biases and gates)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas
    warmup_steps: int = 50  # linear warmup from 0 to lr
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio at max_steps
    grad_clip: float = 1.0  # clip the global gradient norm to this (0 = off)
    gate_lr_scale: float = 1.0  # learning-rate multiplier for bridge gates


@dataclass
class TrainConfig:
    """One training stage's loop settings."""

    max_steps: int = 1000  # optimiser steps
    batch_size: int = 16  # items per step per process (before accumulation)
    max_batch_seconds: float | None = None  # bucketed batches: cap on summed audio seconds per micro-batch
    grad_accum: int = 1  # micro-batches per optimiser step
    optim: OptimConfig = field(default_factory=OptimConfig)  # optimiser and learning-rate schedule
    eval_every: int = 200  # evaluate on dev every N steps (and at the end)
    eval_items: int = 64  # dev items decoded for CER/WER/BLEU/chrF++ at each evaluation
    save_every: int = 200  # checkpoint every N steps (atomic), and at the end
    keep_last: int = 2  # checkpoints kept
    log_every: int = 10  # steps between progress lines in metrics.jsonl
    max_nonfinite: int = 5  # consecutive non-finite losses that stop the run
    num_workers: int = 0  # data-loader worker processes


class GateParameter(torch.nn.Parameter):
    """A parameter of the gates' group (`gate_lr_scale` × the learning rate, no decay): one that starts where
    its bridge does nothing (a gate at 0), or a prior that must move by whole units within a short run. A type,
    not a name: any module may hold one, and copies keep it."""


def param_groups(params: dict[str, torch.nn.Parameter], cfg: OptimConfig) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices only; `GateParameter`s get `gate_lr_scale` × the learning
    rate, without decay."""
    decay, no_decay, gates = [], [], []
    for p in params.values():
        if isinstance(p, GateParameter):
            gates.append(p)
        elif p.dim() < 2:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
        {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0},
        {"params": gates, "weight_decay": 0.0, "lr_scale": cfg.gate_lr_scale},
    ]
    return [g for g in groups if g["params"]]


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to 1, then cosine decay to `min_lr_ratio` at `max_steps`."""
    o = cfg.optim
    if step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    progress = min(1.0, (step - o.warmup_steps) / max(1, cfg.max_steps - o.warmup_steps))
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
