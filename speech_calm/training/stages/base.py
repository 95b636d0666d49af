"""The stage contract: what `speech_calm.training.loop.fit` and `run` call on every stage."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speech_calm.core.optim import TrainConfig
from speech_calm.training.recipe import Recipe


class Stage(ABC):
    """One step of a recipe. `fit` uses: module, trainable(), buffers(), batches(epoch), loss(), evaluate(); `run` calls
    setup() first and export() last."""

    name: str
    # the recipe sections the stage reads: a resumed run must agree with the saved recipe on these (and only on
    # these: changing the key-value experiment's defaults does not block resuming a speech run)
    sections: tuple[str, ...] = ()
    train_config: TrainConfig
    module: nn.Module  # its forward computes the loss (what DDP wraps)

    def __init__(self, recipe: Recipe, runtime: Any, run_dir: Path) -> None:
        if not self.sections:
            raise TypeError(f"stage {type(self).__name__} must say which recipe sections it reads (`sections`): "
                            f"a resumed run is checked against the saved recipe on those")
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
