"""Training end to end on a tiny corpus with tiny towers: both stages, resume after SIGKILL, torchrun DDP,
non-finite losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from speech_calm.core.optim import TrainConfig
from speech_calm.training.loop import NonFiniteLossError, Runtime, fit, run
from speech_calm.training.recipe import load_recipe
from tests.runs import make_workspace, write_recipe

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("train"))


def train_losses(stage_dir: Path) -> list[float]:
    rows = [json.loads(x) for x in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in rows if "train_loss" in r]


def test_both_stages_train_end_to_end(workspace: Path) -> None:
    recipe = load_recipe(write_recipe(workspace, "e2e"))
    run_dir = run(recipe)
    enc, comp = run_dir / "encoder", run_dir / "compose"
    for stage in (enc, comp):
        losses = train_losses(stage)
        assert losses[-1] < 0.7 * losses[0], (stage.name, losses)  # the loss falls
        assert (stage / "done.json").is_file() and (stage / "curves.png").stat().st_size > 1000
        evals = [json.loads(x) for x in (stage / "metrics.jsonl").read_text().splitlines() if '"dev_loss"' in x]
        assert len(evals) == 2
    assert (enc / "model" / "model.safetensors").is_file()
    compose_eval = json.loads((comp / "done.json").read_text())["final"]
    for key in ("dev_cer", "dev_wer", "dev_script_fidelity", "dev_bleu", "dev_chrf", "dev_loss"):
        assert key in compose_eval
    bridges = load_file(str(comp / "bridges.safetensors"))
    assert bridges and all(k.startswith("speech.") for k in bridges)  # the bridges alone
    assert load_recipe(run_dir / "recipe.yaml") == recipe
    # a rerun skips complete stages
    out = subprocess.run([sys.executable, "-m", "speech_calm.train", str(run_dir / "recipe.yaml")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "[encoder] already complete" in out.stdout and "[compose] already complete" in out.stdout


def test_prefix_baseline_trains(workspace: Path) -> None:
    path = write_recipe(workspace, "prefix", compose={"bridge": {"type": "prefix", "every": 1, "frame_stack": 2}})
    run_dir = run(load_recipe(path))
    losses = train_losses(run_dir / "compose")
    assert losses[-1] < losses[0] - 0.2, losses  # slower than CALM on a random anchor, but it learns
    assert all(k.startswith("speech.") for k in load_file(str(run_dir / "compose" / "bridges.safetensors")))


def test_offset_biased_char_target_composition_trains(workspace: Path) -> None:
    """The compose stage as the recipe runs it: CTC-compressed memory, offset-biased bridges, transcripts one
    character per token over the script's characters, chained (one row per utterance trains both tasks, one
    search answers both). m_A's cached states carry their character positions."""
    encoder = {"model": {"d_model": 32, "num_heads": 4, "ffn_dim": 64, "num_layers": 2, "subsampling_channels": 8,
                         "depthwise_kernel_size": 3, "dropout": 0.0, "freq_masks": 0, "time_masks": 0},
               "train": {"max_steps": 12, "batch_size": 8, "eval_every": 12, "eval_items": 2, "save_every": 12,
                         "log_every": 4, "optim": {"lr": 3e-3, "warmup_steps": 2}}}
    path = write_recipe(workspace, "chain", encoder=encoder, compose={
        "compress": "ctc", "char_targets": True, "script_vocab": True, "bridge": {"every": 1, "offset_bias": 4},
        "chain_translation": True})
    run_dir = run(load_recipe(path))
    losses = train_losses(run_dir / "compose")
    assert losses[-1] < 0.7 * losses[0], losses
    final = json.loads((run_dir / "compose" / "done.json").read_text())["final"]
    assert "dev_cer" in final and "dev_chrf" in final
    assert any(k.endswith("offset_bias") for k in load_file(str(run_dir / "compose" / "bridges.safetensors")))


def _wait_for_checkpoint(stage_dir: Path, proc: subprocess.Popen, timeout: float) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if list((stage_dir / "checkpoints").glob("step-*/state.json")) if (stage_dir / "checkpoints").exists() else []:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended before its first checkpoint: {proc.stdout.read()}")
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


def test_sigkill_then_resume_ends_at_the_same_step(workspace: Path) -> None:
    enc = {"model": {"d_model": 32, "num_heads": 4, "ffn_dim": 64, "num_layers": 2, "subsampling_channels": 8,
                     "depthwise_kernel_size": 3},
           "train": {"max_steps": 400, "batch_size": 4, "eval_every": 1000, "eval_items": 4, "save_every": 10,
                     "log_every": 5}}
    path = write_recipe(workspace, "killed", stages=["encoder"], encoder=enc)
    stage_dir = workspace / "killed" / "encoder"
    cmd = [sys.executable, "-m", "speech_calm.train", str(path)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_checkpoint(stage_dir, proc, timeout=180)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (stage_dir / "done.json").exists()
    saved = sorted(p.name for p in (stage_dir / "checkpoints").glob("step-*"))
    assert saved and all(not p.startswith(".") for p in saved)
    out = subprocess.run(cmd + ["encoder.train.max_steps=30"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"resuming from {stage_dir / 'checkpoints' / saved[-1]}" in out.stdout
    steps = [json.loads(x)["step"] for x in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 30  # no duplicate rows from before the kill
    assert sorted(p.name for p in (stage_dir / "checkpoints").glob("step-*"))[-1] == "step-00000030"
    assert len(list((stage_dir / "checkpoints").glob("step-*"))) <= 2  # keep_last


def test_resume_matches_an_uninterrupted_run(workspace: Path) -> None:
    """Stopping after a checkpoint and resuming gives the same weights as training straight through."""
    enc = {"model": {"d_model": 32, "num_heads": 4, "ffn_dim": 64, "num_layers": 2, "subsampling_channels": 8,
                     "depthwise_kernel_size": 3},
           "train": {"max_steps": 12, "batch_size": 4, "eval_every": 100, "save_every": 6, "log_every": 3}}
    straight = run(load_recipe(write_recipe(workspace, "straight", stages=["encoder"], encoder=enc)))
    path = write_recipe(workspace, "halves", stages=["encoder"], encoder=enc)
    run(load_recipe(path, ["encoder.train.max_steps=6"]))
    (workspace / "halves" / "encoder" / "done.json").unlink()  # as if the first run had stopped at step 6
    halves = run(load_recipe(path))
    a = load_file(str(straight / "encoder/model/model.safetensors"))
    b = load_file(str(halves / "encoder/model/model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_resume_compares_only_the_sections_its_stages_read(workspace: Path) -> None:
    """A saved recipe whose key-value section differs (a default changed in code since) resumes a speech run;
    one whose encoder section differs is refused, and the message names the section."""
    import yaml

    from speech_calm.schema import ConfigError

    enc = {"model": {"d_model": 32, "num_heads": 4, "ffn_dim": 64, "num_layers": 2, "subsampling_channels": 8,
                     "depthwise_kernel_size": 3},
           "train": {"max_steps": 2, "batch_size": 4, "eval_every": 100, "save_every": 2, "log_every": 1}}
    path = write_recipe(workspace, "sections", stages=["encoder"], encoder=enc)
    run_dir = run(load_recipe(path))
    saved = run_dir / "recipe.yaml"
    data = yaml.safe_load(saved.read_text())
    data["kv"]["data"]["num_keys"] += 1  # what a change of KVDataConfig's default would leave
    data["text"]["shots"] += 1
    saved.write_text(yaml.safe_dump(data))
    (run_dir / "encoder" / "done.json").unlink()  # as if it had stopped at step 2 of 3
    run(load_recipe(path, ["encoder.train.max_steps=3"]))  # resumes: nothing the encoder stage reads differs
    assert json.loads((run_dir / "encoder" / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 3
    with pytest.raises(ConfigError, match=r"its encoder settings differ"):
        run(load_recipe(path, ["encoder.model.ffn_dim=48"]))
    with pytest.raises(ConfigError, match=r"its seed settings differ"):
        run(load_recipe(path, ["seed=1"]))


def test_torchrun_two_processes(workspace: Path) -> None:
    tiny_train = {"max_steps": 6, "batch_size": 4, "eval_every": 6, "eval_items": 2, "save_every": 3, "log_every": 3}
    path = write_recipe(workspace, "ddp", encoder={"train": tiny_train}, compose={"train": tiny_train})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "speech_calm.train", str(path)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for stage in ("encoder", "compose"):
        assert (workspace / "ddp" / stage / "done.json").is_file()
    assert (workspace / "ddp" / "compose" / "bridges.safetensors").is_file()


class _NaNStage:
    """A real (tiny) stage whose loss turns non-finite from step 3 on."""

    name = "nan"

    def __init__(self) -> None:
        self.module = torch.nn.Linear(2, 1)
        self.calls = 0

    def trainable(self):  # noqa: ANN201
        return list(self.module.named_parameters())

    def buffers(self):  # noqa: ANN201
        return []

    def batches(self, epoch: int) -> list[int]:
        return list(range(4))

    def loss(self, model: torch.nn.Module, batch: int) -> torch.Tensor:
        self.calls += 1
        out = model(torch.ones(1, 2)).sum()
        return out * float("nan") if self.calls > 3 else out ** 2

    def evaluate(self) -> dict[str, float]:
        return {"loss": 0.0}


def test_repeated_nonfinite_losses_stop_with_last_good_checkpoint(tmp_path: Path) -> None:
    cfg = TrainConfig(max_steps=50, save_every=2, eval_every=100, log_every=1, max_nonfinite=3)
    stage = _NaNStage()
    with pytest.raises(NonFiniteLossError, match="not finite 3 steps in a row.*step-00000004"):
        fit(stage, cfg, tmp_path, Runtime(torch.device("cpu")))
    assert torch.isfinite(stage.module.weight).all()
    good = load_file(str(tmp_path / "checkpoints" / "step-00000004" / "trainable.safetensors"))
    assert all(torch.isfinite(v).all() for v in good.values())


def test_curves_share_the_step_axis_from_zero() -> None:
    """A dev metric evaluated once sits at its step on the loss's axis, not alone on an axis around it."""
    import matplotlib.pyplot as plt

    from speech_calm.training.loop import curves_figure

    rows = [{"step": s, "train_loss": 3.0 - s / 100} for s in range(10, 210, 10)] + [{"step": 200, "dev_cer": 40.0}]
    fig = curves_figure(rows)
    limits = {ax.get_xlim() for ax in fig.axes}
    plt.close(fig)
    assert limits == {(0.0, 200.0)} and len(fig.axes) == 2


AUGMENT = {"speeds": [0.9, 1.0, 1.1], "pitch_prob": 0.5, "vtlp_prob": 0.5, "reverb_prob": 0.5, "noise_prob": 0.5,
           "telephone_prob": 0.3}


def test_augmented_encoder_trains_and_resumes_to_the_same_weights(workspace: Path) -> None:
    """With encoder.augment on, m_A trains end to end, and a run stopped and resumed sees the same augmented
    audio as one that ran straight through (augmentation is a function of seed, epoch and item)."""
    enc = {"model": {"d_model": 32, "num_heads": 4, "ffn_dim": 64, "num_layers": 2, "subsampling_channels": 8,
                     "depthwise_kernel_size": 3},
           "augment": AUGMENT,
           "train": {"max_steps": 8, "batch_size": 4, "eval_every": 100, "save_every": 4, "log_every": 2}}
    straight = run(load_recipe(write_recipe(workspace, "aug_straight", stages=["encoder"], encoder=enc)))
    losses = train_losses(straight / "encoder")
    assert len(losses) == 4 and all(np.isfinite(losses))
    path = write_recipe(workspace, "aug_halves", stages=["encoder"], encoder=enc)
    run(load_recipe(path, ["encoder.train.max_steps=4"]))
    (workspace / "aug_halves" / "encoder" / "done.json").unlink()  # as if the first run had stopped at step 4
    halves = run(load_recipe(path))
    a = load_file(str(straight / "encoder/model/model.safetensors"))
    b = load_file(str(halves / "encoder/model/model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_augmentation_changes_training_audio_only(workspace: Path) -> None:
    """Training batches are augmented; dev evaluation reads the audio as it is (the same metrics as without)."""
    from speech_calm.training.stages.encoder import EncoderStage

    def stage(augment: dict) -> EncoderStage:
        recipe = load_recipe(write_recipe(workspace, "aug_stage", stages=["encoder"], encoder={"augment": augment}))
        torch.manual_seed(0)  # the same initial weights for both
        s = EncoderStage(recipe, Runtime(torch.device("cpu")), workspace / "aug_stage")
        s.setup()
        s.encoder.eval()
        return s

    plain, augmented = stage({}), stage(AUGMENT)
    batch = plain.batches(1)[0]
    raw, _ = plain.train_audio(batch)
    aug, _ = augmented.train_audio(batch)
    assert not (raw.shape == aug.shape and torch.allclose(raw, aug))
    again, _ = augmented.train_audio(batch)
    torch.testing.assert_close(aug, again, rtol=0, atol=0)
    with torch.no_grad():
        assert plain.evaluate() == augmented.evaluate()


def test_decoding_settings_may_change_on_resume_what_is_trained_may_not() -> None:
    """A finished run may be decoded with a search chosen later (e.g. a CTC weight swept on dev); its bridges'
    settings still identify it."""
    from dataclasses import replace

    from speech_calm.speech.config import ComposeStageConfig
    from speech_calm.training.loop import _identity

    cfg = ComposeStageConfig()
    assert _identity(cfg) == _identity(replace(cfg, decoding=replace(cfg.decoding, ctc_weight=0.6, draft=False)))
    assert _identity(cfg) != _identity(replace(cfg, bridge=replace(cfg.bridge, offset_bias=4)))
