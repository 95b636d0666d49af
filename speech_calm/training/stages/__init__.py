"""Training stages. A stage builds its models, says what trains, yields batches, computes a loss, evaluates,
and exports its result; `speech_calm.train.fit` runs the loop around it.

Stages by name (a recipe's `stages:` list): `encoder` (m_A by CTC), `compose` (bridges); the key-value
experiment `kv_data`, `kv_m_a`, `kv_m_b`, `kv_compose`, `kv_lora`, `kv_finetune`, `kv_eval` (stages/kv.py);
the Telugu text path `text_lm`, `text_compose`, `text_lora`, `text_finetune`, `text_eval` (stages/text.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speech_calm.core.optim import TrainConfig
from speech_calm.schema import ConfigError
from speech_calm.training.recipe import Recipe


class Stage(ABC):
    """One step of a recipe. `fit` uses: module, trainable(), buffers(), batches(epoch), loss(), evaluate(); `run` calls
    setup() first and export() last."""

    name: str
    train_config: TrainConfig
    module: nn.Module  # its forward computes the loss (what DDP wraps)

    def __init__(self, recipe: Recipe, runtime: Any, run_dir: Path) -> None:
        self.recipe = recipe
        self.rt = runtime
        self.run_dir = run_dir

    @abstractmethod
    def setup(self) -> None:
        """Load data and build models."""

    @abstractmethod
    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        """The parameters that train, by name."""

    def buffers(self) -> list[tuple[str, torch.Tensor]]:
        """Buffers that training updates (e.g. BatchNorm statistics), checkpointed with the weights."""
        return []

    @abstractmethod
    def batches(self, epoch: int) -> list[Any]:
        """All batches of an epoch, in order; deterministic for (seed, epoch)."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Scalar loss of one batch; `model` is `self.module` or its DDP wrapper."""

    @abstractmethod
    def evaluate(self) -> dict[str, float]:
        """Dev metrics (called on the main process, in eval mode, without autograd)."""

    @abstractmethod
    def export(self, stage_dir: Path) -> None:
        """Write the stage's result into `stage_dir`."""


def build_stage(name: str, recipe: Recipe, runtime: Any, run_dir: Path) -> Stage:
    """The stage called `name`."""
    from speech_calm.training.stages import kv, text
    from speech_calm.training.stages.compose import ComposeStage
    from speech_calm.training.stages.encoder import EncoderStage

    stages: dict[str, type[Stage]] = {
        "encoder": EncoderStage, "compose": ComposeStage,
        "kv_data": kv.KVDataStage, "kv_m_a": kv.KVModelAStage, "kv_m_b": kv.KVModelBStage,
        "kv_compose": kv.KVComposeStage, "kv_lora": kv.KVLoraStage, "kv_finetune": kv.KVFinetuneStage,
        "kv_eval": kv.KVEvalStage,
        "text_lm": text.TextLMStage, "text_compose": text.TextComposeStage, "text_lora": text.TextLoraStage,
        "text_finetune": text.TextFinetuneStage, "text_eval": text.TextEvalStage,
    }
    if name not in stages:
        raise ConfigError(f"unknown stage {name!r} in stages; known: {', '.join(stages)}")
    return stages[name](recipe, runtime, run_dir)
