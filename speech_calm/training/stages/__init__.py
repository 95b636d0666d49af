"""Training stages. A stage builds its models, says what trains, yields batches, computes a loss, evaluates,
and exports its result; `speech_calm.training.loop.fit` runs the loop around it.

Stages by name (a recipe's `stages:` list): `encoder` (m_A by CTC), `compose` (bridges), `cascade` (LoRA in
the anchor for the cascade baseline: m_A's transcript → the anchor's translation); the key-value
experiment `kv_data`, `kv_m_a`, `kv_m_b`, `kv_compose`, `kv_lora`, `kv_finetune`, `kv_eval` (kv.py);
the Telugu text path `text_lm`, `text_compose`, `text_lora`, `text_finetune`, `text_eval` (text.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speech_calm.schema import ConfigError
from speech_calm.training.recipe import Recipe
from speech_calm.training.stages.base import Stage


def stage_class(name: str) -> type[Stage]:
    """The stage called `name` (a recipe's `stages:` entry)."""
    from speech_calm.training.stages import kv, text
    from speech_calm.training.stages.cascade import CascadeStage
    from speech_calm.training.stages.compose import ComposeStage
    from speech_calm.training.stages.encoder import EncoderStage

    stages: dict[str, type[Stage]] = {"encoder": EncoderStage, "compose": ComposeStage,
                                     "cascade": CascadeStage, **kv.STAGES, **text.STAGES}
    if name not in stages:
        raise ConfigError(f"unknown stage {name!r} in stages; known: {', '.join(stages)}")
    return stages[name]


def build_stage(name: str, recipe: Recipe, runtime: Any, run_dir: Path) -> Stage:
    """The stage called `name`, for this recipe and run."""
    return stage_class(name)(recipe, runtime, run_dir)
