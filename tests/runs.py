"""Tiny training workspaces for tests: a corpus, an anchor with a tokenizer, and recipes over them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests import tiny

REPO = Path(__file__).resolve().parents[1]


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


def tiny_kv_recipe(run_dir: Path, log_every: int = 2) -> Path:
    """Every stage of recipes/kv_arithmetic.yaml at a tiny size (its bridges, window 1 and a null slot, on both
    tiny layers), written beside `run_dir`; returns the recipe's path."""
    recipe = yaml.safe_load((REPO / "recipes" / "kv_arithmetic.yaml").read_text())
    tiny_model = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64}
    loop = {"max_steps": 4, "batch_size": 16, "eval_every": 4, "eval_items": 16, "save_every": 4,
            "log_every": log_every}
    kv = recipe["kv"]
    kv["data"].update(num_keys=40, substitution_train=200, arithmetic_train=200, kv_arithmetic_train=100,
                      test_rows=24)
    for name in ("m_a", "m_b"):
        kv[name].update(model=tiny_model, train=loop)
    for name in ("compose", "lora", "finetune"):
        kv[name]["train"] = loop
    kv["compose"]["bridge"]["every"] = 1
    recipe.update(run_dir=str(run_dir), device="cpu")
    path = run_dir.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(recipe))
    return path


def tiny_text_recipe(data_dir: Path, anchor: Path, run_dir: Path) -> Path:
    """Every stage of recipes/telugu_text.yaml at a tiny size over `data_dir` (data_prep/translation.py) and
    the anchor in `anchor`, written beside `run_dir`; returns the recipe's path."""
    recipe = yaml.safe_load((REPO / "recipes" / "telugu_text.yaml").read_text())
    loop = {"max_steps": 3, "batch_size": 4, "eval_every": 3, "eval_items": 4, "save_every": 3, "log_every": 1}
    t = recipe["text"]
    t.update(data_dir=str(data_dir), anchor={"source": str(anchor)}, test_items=6, decoding={"max_new_tokens": 6})
    t["lm"].update(model={"hidden_size": 24, "num_layers": 2, "num_heads": 2, "intermediate_size": 48}, train=loop)
    t["compose"].update(bridge={"mode": "aligned", "every": 1}, train=loop)
    t["lora"]["train"] = loop
    t["finetune"]["train"] = {**loop, "optim": {"lr": 0.05, "warmup_steps": 1}}  # large enough to move the ppl
    recipe.update(run_dir=str(run_dir), device="cpu")
    path = run_dir.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True))
    return path
