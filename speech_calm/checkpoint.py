"""Checkpoint files: atomic safetensors writes (never pickles) and bridge-only weights.

A composition checkpoint holds the trainable bridges alone; the frozen towers are named by the recipe saved
beside it and loaded from their own sources.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from speech_calm.compose import Composition


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write tensors as safetensors atomically: a temporary name in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file (no code is executed, unlike pickles)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return load_file(str(path), device=str(device))


def save_bridges(model: Composition, path: str | Path) -> None:
    """Save the composition's bridges alone (no tower weights)."""
    save_tensors(model.bridge_state_dict(), path, metadata={"format": "speech_calm.bridges"})


def load_bridges(model: Composition, path: str | Path) -> None:
    """Load bridges saved by `save_bridges` into a composition built from the same recipe."""
    model.load_bridge_state_dict(load_tensors(path, next(model.bridges.parameters()).device))
