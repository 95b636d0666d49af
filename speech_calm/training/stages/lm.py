"""Base of the stages that train a small causal LM from scratch on text rows (kv_m_a, kv_m_b, text_lm).

A subclass says which tokenizer, which rows and which dev metrics; this class builds the model from the
section's `SmallLMConfig`, trains every weight (next-token loss on the target, or on every token with
`loss_on_prompt`) and exports `STAGE/model/`: a model directory with its tokenizer, loadable on its own as an
anchor or a text tower.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speech_calm.core.baselines import AnchorModel
from speech_calm.core.batch import bucket_batches
from speech_calm.text.rows import Row, TextModel
from speech_calm.towers.small_lm import build_small_lm
from speech_calm.training.stages.base import Stage

MODEL_DIR = "model"


def row_batches(rows: list[Row], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Row indices in batches of similar length (little padding), in an order fixed by (seed, epoch)."""
    return bucket_batches([len(r.prompt) + len(r.target) for r in rows], batch_size, None, seed, epoch)


class RowStage(Stage):
    """A stage that trains `self.module` (through `self.tm`, a TextModel) on text rows: subclasses give the config
    `section`, the rows and the dev metrics, and set `module`, `tm` and `rows` in `setup`."""

    loss_on_prompt = False  # next-token loss on the target only (True: on every token)
    config_group: str  # the recipe section of the experiment ("kv", "text")
    config_key: str  # the stage's part of it ("m_a", "compose", ...)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if getattr(cls, "config_group", None):
            cls.sections = (cls.config_group,)
        super().__init_subclass__(**kwargs)

    def __init__(self, recipe: Any, runtime: Any, run_dir: Path) -> None:
        super().__init__(recipe, runtime, run_dir)
        self.train_config = self.section.train

    @property
    def section(self) -> Any:
        """The stage's config, `recipe.<config_group>.<config_key>` (it has a `train` TrainConfig)."""
        return getattr(getattr(self.recipe, self.config_group), self.config_key)

    @abstractmethod
    def train_rows(self) -> list[Row]:
        """The training rows."""

    @abstractmethod
    def dev_metrics(self, tm: TextModel) -> dict[str, float]:
        """Metrics on held-out rows (in eval mode, without autograd)."""

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        return list(self.module.trainable_parameters())

    def batches(self, epoch: int) -> list[Any]:
        return row_batches(self.rows, self.train_config.batch_size, self.recipe.seed, epoch)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return self.tm.loss(model, [self.rows[i] for i in batch], self.loss_on_prompt)

    def evaluate(self) -> dict[str, float]:
        return self.dev_metrics(self.tm)


class CausalLMStage(RowStage):
    """Train a new small LM on `train_rows()`; subclasses name their `LMStageConfig` and implement the hooks."""

    end: str = "eos"  # what ends a target (see TextModel)

    @property
    def loss_on_prompt(self) -> bool:  # type: ignore[override]
        return self.section.loss_on_prompt

    @abstractmethod
    def make_tokenizer(self) -> Any:
        """The tokenizer the model reads (its vocabulary size sizes the model)."""

    def setup(self) -> None:
        self.tokenizer = self.make_tokenizer()
        self.model = build_small_lm(self.section.model, len(self.tokenizer), self.recipe.seed)
        self.module = AnchorModel(self.model, "all").to(self.rt.device)
        self.tm = TextModel(self.module, self.tokenizer, self.end)
        self.rows = self.train_rows()
        if self.rt.is_main:
            n = sum(p.numel() for p in self.model.parameters())
            print(f"[{self.name}] a new {self.section.model.num_layers}-layer LM of {n / 1e6:.2f} M parameters "
                  f"(vocabulary {len(self.tokenizer)}), {len(self.rows)} training rows", flush=True)

    def export_model(self) -> nn.Module:
        """The model to save (subclasses may transform it, e.g. give it the anchor's full vocabulary)."""
        return self.model

    def export(self, stage_dir: Path) -> None:
        out = stage_dir / MODEL_DIR
        self.export_model().save_pretrained(str(out))
        tok = getattr(self.tokenizer, "base", self.tokenizer)  # a CompactTokenizer saves the tokenizer it narrows
        tok.save_pretrained(str(out))
