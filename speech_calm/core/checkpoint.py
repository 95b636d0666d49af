"""Run directories and checkpoints: atomic safetensors writes (never pickles), resume, bridge-only weights.

    RUN_DIR/
      recipe.yaml                     the resolved recipe (what made this run)
      encoder/                        one directory per stage
        checkpoints/step-00000200/    trainable.safetensors, optimizer.safetensors, rng.safetensors, state.json
        metrics.jsonl, curves.png     training and evaluation metrics
        model/                        the stage's result (here: the Conformer, loadable on its own)
        done.json                     written last: the stage is complete and is skipped on a rerun
      compose/
        bridges.safetensors           the composition's result: bridges only; towers come from the recipe

A checkpoint directory is written under a temporary name and renamed when complete, so a kill at any moment
leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from speech_calm.core.composition import Composition
from speech_calm.files import write_json

STEP_PREFIX = "step-"


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


def _optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and plain data (for JSON)."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, per_param in state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in list(tensors.items()) + list(plain["scalars"].items()):
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(
    stage_dir: Path,
    step: int,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    extra: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write checkpoint `step` (trainable weights, optimizer, scheduler, RNG, step, `extra`) atomically and
    keep only the newest `keep_last`."""
    root = stage_dir / "checkpoints"
    final = root / f"{STEP_PREFIX}{step:08d}"
    tmp = root / f".{final.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_tensors(trainable, tmp / "trainable.safetensors")
    opt_tensors, opt_plain = _optimizer_to_files(optimizer)
    save_tensors(opt_tensors, tmp / "optimizer.safetensors")
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    save_tensors(rng, tmp / "rng.safetensors")
    np_state = np.random.get_state()
    write_json(tmp / "state.json", {
        "step": step,
        "optimizer": opt_plain,
        "scheduler": scheduler.state_dict(),
        "python_rng": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        **extra,
    })
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(root.glob(f"{STEP_PREFIX}*"))[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(stage_dir: Path) -> Path | None:
    """The newest complete checkpoint of a stage, or None."""
    found = sorted((stage_dir / "checkpoints").glob(f"{STEP_PREFIX}*"))
    found = [p for p in found if (p / "state.json").is_file()]
    return found[-1] if found else None


def load_checkpoint(
    path: Path,
    params: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore weights (parameters and tracked buffers, by name), optimizer, scheduler and RNG from `path`;
    returns its state.json (step, extras)."""
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    weights = load_tensors(path / "trainable.safetensors")
    if set(weights) != set(params):
        raise ValueError(
            f"checkpoint {path} does not match this run's trainable parameters (missing "
            f"{sorted(set(params) - set(weights))[:3]}, unexpected {sorted(set(weights) - set(params))[:3]}); "
            f"was the recipe changed? Start a new run_dir or remove {path.parent}"
        )
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(weights[name].to(p.device, p.dtype))
    device = next(iter(params.values())).device
    opt_state = _optimizer_from_files(load_tensors(path / "optimizer.safetensors", device), state["optimizer"])
    optimizer.load_state_dict(opt_state)
    scheduler.load_state_dict(state["scheduler"])
    rng = load_tensors(path / "rng.safetensors")
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available():
        cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("cuda"))]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    v, internal, gauss = state["python_rng"]
    random.setstate((v, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy_rng"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    return state
