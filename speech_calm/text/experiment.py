"""A text experiment, as its adaptation and table stages see it: where m_A and m_B come from, the rows that
teach the anchor the task, the dev metrics, and every model of a run for the results table.

The key-value task (`text.kv.KVExperiment`) and Telugu→English (`text.translation.TranslationExperiment`)
differ only here; the stages that adapt the anchor (CALM, LoRA, fine-tuning) and the table are made once for
both (`training.stages.adapt.adaptation_stages`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from speech_calm.core.bridge import BridgeConfig
from speech_calm.text.rows import Row, TextModel
from speech_calm.text.variants import Method, Parts, load_plain, load_variant

# the anchor's adaptations, in table order: recipe key (and stage-name suffix) -> (method, table label)
ADAPTATIONS: dict[str, tuple[Method, str]] = {
    "compose": ("calm", "CALM"),
    "lora": ("lora", "LoRA"),
    "finetune": ("finetune", "m_B fine-tuned"),
}


class Experiment(ABC):
    """One text experiment in one run.

    settings: the experiment's recipe section (`KVConfig`, `TextConfig`; `group` names it, and prefixes its
    stages' names); run_dir: the run whose stages made m_A and m_B; seed: the run's seed.
    """

    group: str

    def __init__(self, settings: Any, run_dir: Path, seed: int = 0) -> None:
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.seed = seed

    @classmethod
    def of(cls, recipe: Any, run_dir: Path) -> Experiment:
        """The experiment of a whole recipe: its section and seed."""
        return cls(getattr(recipe, cls.group), run_dir, recipe.seed)

    @property
    def bridge(self) -> BridgeConfig:
        """CALM's bridges (LoRA's rank is matched to their parameter count)."""
        return self.settings.compose.bridge

    @abstractmethod
    def parts(self) -> Parts:
        """Where the anchor (m_B) and m_A come from."""

    @abstractmethod
    def adapt_rows(self) -> list[Row]:
        """The rows every adaptation of the anchor trains on (the same for CALM, LoRA and fine-tuning)."""

    @abstractmethod
    def adapt_metrics(self, tm: TextModel, eval_items: int, batch_size: int) -> dict[str, Any]:
        """Dev metrics of an adapted model (in eval mode, without autograd)."""

    def models(self, device: torch.device | str) -> Iterator[tuple[str, TextModel, dict[str, Any]]]:
        """(table label, model, its params.json) of m_A, m_B and each adaptation this run has finished, one at
        a time (each holds its own copy of the anchor: drop one before the next is built)."""
        parts = self.parts()
        yield "m_A", load_plain(parts.tower, parts, device), {}
        yield "m_B", load_plain(parts.anchor.source, parts, device), {}
        for key, (method, label) in ADAPTATIONS.items():
            stage_dir = self.run_dir / f"{self.group}_{key}"
            if (stage_dir / "done.json").is_file():  # a recipe without that stage: no row
                yield (label, *load_variant(method, parts, stage_dir, self.bridge, device))
