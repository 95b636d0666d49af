"""Bit-identical behaviour across refactors: tiny end-to-end runs at a fixed seed give exactly the pinned losses,
dev metrics and outputs (`tests/pinned.json`).

The runs go through the stable entry points only (`python -m speech_calm.train`'s `main`, `speech_calm.load`,
the recipe files), so a change of module layout cannot change what they measure. Every run uses one thread:
summation order then depends on nothing but the code. The values come from the x86_64 CPU build of torch 2.11
that `make install` installs; after a deliberate change of behaviour, rewrite them with
`python -m tests.test_pinned --write` and say why in the commit.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
PINNED = Path(__file__).with_name("pinned.json")

ENCODER = {"model": {"d_model": 32, "num_heads": 4, "ffn_dim": 64, "num_layers": 2, "subsampling_channels": 8,
                     "depthwise_kernel_size": 3, "dropout": 0.0, "freq_masks": 0, "time_masks": 0},
           "train": {"max_steps": 12, "batch_size": 8, "eval_every": 12, "eval_items": 2, "save_every": 12,
                     "log_every": 2, "optim": {"lr": 3e-3, "warmup_steps": 2}}}
ENGLISH = ("The river runs past the old mill and the children walk to school along its bank. In the evening "
           "the market fills with people who buy rice, vegetables and flowers.")
COMPOSE_LOOP = {"max_steps": 10, "batch_size": 8, "eval_every": 10, "eval_items": 4, "save_every": 10,
                "log_every": 1, "optim": {"lr": 1e-2, "warmup_steps": 2, "gate_lr_scale": 10.0}}


def _losses(stage_dir: Path) -> list[dict[str, Any]]:
    """Every logged row of a stage without its timings (they vary from run to run)."""
    rows = [json.loads(x) for x in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if "time" not in k and "sec" not in k and k != "lr"} for r in rows]


def _train(path: Path) -> Path:
    from speech_calm.train import main

    assert main([str(path)]) == 0
    return Path(yaml.safe_load(path.read_text())["run_dir"])


def _outputs(run_dir: Path, files: list[str]) -> list[dict[str, Any]]:
    import speech_calm

    model = speech_calm.load(run_dir, device="cpu")
    from tests.trained import TONES

    results = model.transcribe(files, task="both", **TONES)  # the pinned outputs predate the no-speech gate
    return [{"text": r["text"], "translation": r["translation"]} for r in results]


def measure(root: Path) -> dict[str, Any]:
    """Train every tiny pipeline under `root` and collect what must not change."""
    from tests.runs import (
        make_workspace,
        tiny_kv_recipe,
        tiny_text_recipe,
        write_recipe,
    )

    ws = make_workspace(root)
    test_files = [str(ws / "data" / r["audio"]) for r in map(json.loads, (ws / "data/test.jsonl").open())][:3]
    out: dict[str, Any] = {}
    # the speech recipe's composition: CTC-compressed memory, offset-biased bridges, character targets over the
    # script's vocabulary, chained translation
    speech = _train(write_recipe(ws, "pin_speech", encoder=ENCODER, compose={
        "compress": "ctc", "char_targets": True, "script_vocab": True, "chain_translation": True,
        "bridge": {"every": 1, "offset_bias": 4}, "train": COMPOSE_LOOP}))
    out["speech"] = {"encoder": _losses(speech / "encoder"), "compose": _losses(speech / "compose"),
                     "outputs": _outputs(speech, test_files)}
    # the plain recipe (frame stacking, BPE targets, two tasks) and the prefix projector on the same m_A
    for name, bridge in (("pin_plain", {"every": 1, "frame_stack": 2}),
                         ("pin_prefix", {"type": "prefix", "every": 1, "frame_stack": 2})):
        run = _train(write_recipe(ws, name, stages=["compose"], compose={
            "tower": {"source": str(speech / "encoder" / "model")}, "bridge": bridge, "train": COMPOSE_LOOP}))
        out[name] = {"compose": _losses(run / "compose"), "outputs": _outputs(run, test_files)}
    # the key-value experiment, every stage at a tiny size
    run = _train(tiny_kv_recipe(root / "kv", log_every=1))
    out["kv"] = {stage: _losses(run / stage) for stage in ("kv_m_a", "kv_m_b", "kv_compose", "kv_lora", "kv_finetune")}
    out["kv"]["table"] = json.loads((run / "kv_eval" / "table.json").read_text())
    # the Telugu→English text experiment, every stage at a tiny size
    from data_prep.translation import prepare
    from tests import tiny

    prepare("synthetic", root / "text_data", n_train=120, n_dev=12, n_test=12, n_mono=300)
    texts = [r["src"] + " " + r["tgt"] for r in map(json.loads, (root / "text_data" / "train.jsonl").open())]
    texts += [json.loads(x)["text"] for x in (root / "text_data" / "mono.jsonl").open()]
    texts += ["Translate Telugu to English.\n\nTelugu: English:", ENGLISH]
    tiny.save_anchor(str(root / "text_anchor"), texts, kind="llama")
    run = _train(tiny_text_recipe(root / "text_data", root / "text_anchor", root / "text"))
    out["text"] = {stage: _losses(run / stage) for stage in ("text_lm", "text_compose", "text_lora", "text_finetune")}
    out["text"]["table"] = json.loads((run / "text_eval" / "table.json").read_text())["results"]
    return out


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _drop_paths(node: Any) -> Any:
    """Temporary directories and timings differ between runs; everything else is compared as it is."""
    if isinstance(node, dict):
        return {k: _drop_paths(v) for k, v in node.items()
                if k not in ("run_dir", "path", "stage_dir") and "seconds" not in k}
    if isinstance(node, list):
        return [_drop_paths(v) for v in node]
    return node


def test_tiny_runs_give_the_pinned_losses_and_outputs(tmp_path: Path, one_thread: None) -> None:
    got = _drop_paths(json.loads(json.dumps(measure(tmp_path))))
    want = json.loads(PINNED.read_text())
    for key in want:  # one section at a time, so that a failure names the pipeline that changed
        assert got[key] == want[key], key
    assert set(got) == set(want)


if __name__ == "__main__":  # python -m tests.test_pinned --write [DIR]
    import tempfile

    if sys.argv[1:2] != ["--write"]:
        raise SystemExit("usage: python -m tests.test_pinned --write [WORK_DIR]")
    torch.set_num_threads(1)
    work = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp())
    PINNED.write_text(json.dumps(_drop_paths(measure(work)), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {PINNED}")
