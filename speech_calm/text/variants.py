"""The rows of a results table as models: m_A alone, m_B alone, CALM, LoRA, and m_B fine-tuned.

Built from frozen parts for training (`build_variant`), and rebuilt from a run's stage directories for
evaluation (`load_variant`): a CALM stage leaves `bridges.safetensors` (bridges only; the towers come from
their own directories), a LoRA stage a peft adapter directory, a fine-tuning stage the whole tuned anchor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from speech_calm.core.baselines import (
    AnchorModel,
    add_lora,
    matched_lora_rank,
    parameter_count,
)
from speech_calm.core.bridge import BridgeConfig, bridge_parameter_count
from speech_calm.core.checkpoint import load_bridges, save_bridges
from speech_calm.core.composition import Composition
from speech_calm.core.tower import AugmentingTower, anchor_spec
from speech_calm.files import write_json
from speech_calm.schema import ConfigError
from speech_calm.text.config import FinetuneStageConfig, LoraStageConfig
from speech_calm.text.rows import TOWER, TextModel
from speech_calm.towers.load import TowerConfig, load_anchor, load_text_tower

Method = Literal["calm", "lora", "finetune"]

PARAMS_FILE = "params.json"


@dataclass
class Parts:
    """Where a variant's frozen models come from. anchor: m_B; tower: m_A's model directory (its tokenizer
    beside it: the anchor's in aligned mode, its own in encoder mode); end: what ends a target (TextModel)."""

    anchor: TowerConfig
    tower: str = ""
    end: str = "eos"


def composition(anchor: nn.Module, tower: AugmentingTower, cfg: BridgeConfig) -> Composition:
    if cfg.mode == "aligned" and getattr(tower, "vocab_size", None) != anchor_spec(anchor).vocab_size:
        raise ConfigError(
            f"bridge.mode=aligned needs m_A to read the anchor's tokens, but m_A has a vocabulary of "
            f"{tower.vocab_size} and the anchor {anchor_spec(anchor).vocab_size}; train m_A with the anchor's "
            f"tokenizer or set bridge.mode=encoder"
        )
    return Composition(anchor, {TOWER: tower}, cfg)


def build_variant(
    method: Method,
    parts: Parts,
    section: Any,
    bridge: BridgeConfig,
    device: Any = "cpu",
) -> tuple[TextModel, dict[str, Any]]:
    """A trainable variant and facts about it ({"trainable": count, ...}).

    section: the stage's config (TextComposeConfig, LoraStageConfig or FinetuneStageConfig). bridge: CALM's
    bridge settings, also for LoRA (its rank is matched to those bridges' parameter count).
    """
    a = parts.anchor
    anchor, tokenizer = load_anchor(a.source, device, a.dtype, a.trust_remote_code)
    info: dict[str, Any] = {"anchor_parameters": sum(p.numel() for p in anchor.parameters())}
    tower_tok = None
    if method in ("calm", "lora"):
        tower, tower_tok = load_text_tower(parts.tower, device, a.dtype, a.trust_remote_code)
        info["bridge_parameters"] = bridge_parameter_count(tower, anchor, bridge, TOWER)
    if method == "calm":
        model: nn.Module = composition(anchor, tower, bridge).to(device)
        info["connections"] = model.connections[TOWER]
    elif method == "lora":
        cfg: LoraStageConfig = section
        rank = cfg.rank or matched_lora_rank(anchor, cfg.targets, info["bridge_parameters"])
        info["rank"] = rank
        model = AnchorModel(add_lora(anchor, rank, cfg.targets, cfg.alpha_ratio, cfg.dropout), "lora").to(device)
    elif method == "finetune":
        ft: FinetuneStageConfig = section
        model = AnchorModel(anchor, "all" if ft.embeddings else "all_but_embeddings").to(device)
    else:
        raise ConfigError(f"unknown method {method!r}; one of calm, lora, finetune")
    info["trainable"] = parameter_count(model.trainable_parameters())
    encoder = method == "calm" and bridge.mode == "encoder"
    return TextModel(model, tokenizer, parts.end, tower_tok if encoder else None), info


def export_variant(method: Method, tm: TextModel, stage_dir: Path, info: dict[str, Any]) -> None:
    """Save what a stage trained (bridges, adapter, or tuned anchor) and its facts (params.json)."""
    if method == "calm":
        save_bridges(tm.model, stage_dir / "bridges.safetensors")
    elif method == "lora":
        tm.model.anchor.save_pretrained(str(stage_dir / "adapter"))
    else:
        tm.model.anchor.save_pretrained(str(stage_dir / "model"))
        tm.tokenizer.save_pretrained(str(stage_dir / "model"))
    write_json(stage_dir / PARAMS_FILE, info)


def load_variant(method: Method, parts: Parts, stage_dir: Path, bridge: BridgeConfig,
                 device: Any = "cpu") -> tuple[TextModel, dict[str, Any]]:
    """A trained variant, frozen, from its stage directory (written by `export_variant`)."""
    a = parts.anchor
    if not (stage_dir / PARAMS_FILE).is_file():
        raise FileNotFoundError(f"{stage_dir} holds no trained {method} result; run its stage first")
    info = json.loads((stage_dir / PARAMS_FILE).read_text())
    tower_tok = None
    if method == "finetune":
        anchor, tokenizer = load_anchor(str(stage_dir / "model"), device, a.dtype, a.trust_remote_code)
        model: nn.Module = AnchorModel(anchor)
    else:
        anchor, tokenizer = load_anchor(a.source, device, a.dtype, a.trust_remote_code)
        if method == "calm":
            tower, tower_tok = load_text_tower(parts.tower, device, a.dtype, a.trust_remote_code)
            model = composition(anchor, tower, bridge).to(device)
            load_bridges(model, stage_dir / "bridges.safetensors")
        else:
            from peft import PeftModel

            model = AnchorModel(PeftModel.from_pretrained(anchor, str(stage_dir / "adapter")).to(device))
    model.eval()
    encoder = method == "calm" and bridge.mode == "encoder"
    return TextModel(model, tokenizer, parts.end, tower_tok if encoder else None), info


def load_plain(source: str, parts: Parts, device: Any = "cpu") -> TextModel:
    """A frozen LM on its own (m_A or m_B as a baseline row)."""
    a = parts.anchor
    model, tokenizer = load_anchor(source, device, a.dtype, a.trust_remote_code)
    return TextModel(AnchorModel(model), tokenizer, parts.end)
