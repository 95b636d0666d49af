"""Tiny training workspaces for tests: a corpus, an anchor with a tokenizer, and recipes over them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests import tiny


def make_workspace(root: Path) -> Path:
    """A tiny corpus (root/data) and a tiny anchor whose tokenizer knows its Telugu and English (root/anchor)."""
    tiny.write_corpus(str(root / "data"), n_train=24)
    texts = [r["text"] + " " + r["translation"] for r in map(json.loads, (root / "data/train.jsonl").open())]
    texts += ["Transcribe the Telugu speech.\nTelugu:", "Translate the Telugu speech into English.\nEnglish:"]
    tiny.save_anchor(str(root / "anchor"), texts)
    return root


def write_recipe(ws: Path, run: str, **sections: dict) -> Path:
    recipe = {
        "run_dir": str(ws / run),
        "seed": 0,
        "device": "cpu",
        "stages": ["encoder", "compose"],
        "data": {"dirs": [str(ws / "data")], "languages": ["telugu"]},
        "encoder": {
            "model": {"d_model": 32, "num_heads": 4, "ffn_dim": 64, "num_layers": 2, "subsampling_channels": 8,
                      "depthwise_kernel_size": 3, "dropout": 0.0, "freq_masks": 0, "time_masks": 0},
            "train": {"max_steps": 40, "batch_size": 8, "eval_every": 20, "eval_items": 4, "save_every": 20,
                      "log_every": 5, "optim": {"lr": 3e-3, "warmup_steps": 5}},
        },
        "compose": {
            "anchor": {"source": str(ws / "anchor")},
            "bridge": {"every": 1, "frame_stack": 2},
            "decoding": {"max_new_tokens": 12},
            "train": {"max_steps": 24, "batch_size": 8, "eval_every": 12, "eval_items": 4, "save_every": 12,
                      "log_every": 4, "optim": {"lr": 1e-2, "warmup_steps": 2, "gate_lr_scale": 10.0}},
        },
    }
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) else value
    path = ws / f"{run}.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True))
    return path


