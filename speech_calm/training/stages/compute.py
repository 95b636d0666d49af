"""Base of stages that compute without training (data preparation, evaluation tables): `fit` is skipped."""

from __future__ import annotations

from typing import Any

from torch import nn

from speech_calm.core.optim import TrainConfig
from speech_calm.training.stages.base import Stage


class ComputeStage(Stage):
    """A stage whose work is all in `setup` and `export`; it has no trainable weights and no loop."""

    train_config = TrainConfig(max_steps=0)  # `run` calls fit only for max_steps > 0
    module = nn.Identity()

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        return []

    def batches(self, epoch: int) -> list[Any]:
        return []

    def loss(self, model: nn.Module, batch: Any) -> Any:
        raise RuntimeError(f"stage {self.name} does not train")

    def evaluate(self) -> dict[str, float]:
        return {}
