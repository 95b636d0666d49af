"""The training loop: `fit` trains any stage (batches, autocast, backward with accumulation, clipping,
AdamW step, logging, dev evaluation, atomic checkpoints, resume), `run` runs a recipe's stages in order.

Each stage resumes from its last checkpoint and is skipped when complete; a resumed run must agree with the
saved recipe on the sections its stages read (`Stage.sections`). DDP under torchrun: frozen towers are
replicated, only trainable weights are synchronised (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from speech_calm.core.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from speech_calm.core.optim import TrainConfig, lr_factor, param_groups
from speech_calm.files import write_json
from speech_calm.schema import ConfigError, to_dict
from speech_calm.training.recipe import Recipe, load_recipe, save_recipe


class NonFiniteLossError(RuntimeError):
    """Training produced non-finite losses too many times in a row."""


@dataclass
class Runtime:
    """Where and how this process trains."""

    device: torch.device
    rank: int = 0
    world: int = 1
    autocast_dtype: torch.dtype | None = None  # bf16 on CUDA; None (fp32) on CPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def setup_runtime(device: str) -> Runtime:
    """Pick the device; join the torchrun process group when launched by torchrun."""
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("recipe asks for device=cuda but CUDA is not available; use device=auto or cpu")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Runtime(dev, rank, world, torch.bfloat16 if use_cuda else None)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class MetricsLog:
    """metrics.jsonl (one JSON object per line, each with "step") plus a PNG of the curves."""

    def __init__(self, stage_dir: Path, resume_step: int) -> None:
        self.path = stage_dir / "metrics.jsonl"
        self.rows: list[dict[str, Any]] = []
        if self.path.is_file():  # drop what was logged after the checkpoint we resume from
            self.rows = [json.loads(x) for x in self.path.read_text().splitlines() if x.strip()]
            self.rows = [r for r in self.rows if r.get("step", 0) <= resume_step]
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        os.replace(tmp, self.path)

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def plot(self) -> None:
        """curves.png (`curves_figure`), written atomically."""
        import matplotlib.pyplot as plt

        fig = curves_figure(self.rows)
        if fig is None:
            return
        tmp = self.path.with_name(".curves.png")
        fig.savefig(tmp, dpi=80, format="png")
        plt.close(fig)
        os.replace(tmp, self.path.with_name("curves.png"))


def curves_figure(rows: list[dict[str, Any]]) -> Any:
    """The training loss and each dev metric against the training step, one panel each on one shared step axis
    (from 0 to the last step logged: a metric evaluated once is a point at its step, not a lone axis around it);
    None when nothing numeric was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for r in rows for k in r if k.startswith(("train_", "dev_")) and k != "train_lr"})
    keys = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in rows)]
    if not keys:
        return None
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), squeeze=False, sharex=True)
    for ax, key in zip(axes[:, 0], keys):
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
        ax.set_ylabel(key, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlim(0, max(1, max(r["step"] for r in rows if "step" in r)))
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    return fig


def fit(stage: Any, cfg: TrainConfig, stage_dir: Path, rt: Runtime) -> dict[str, Any]:
    """Train `stage` for `cfg.max_steps` optimiser steps, resuming from its last checkpoint.

    The stage provides: `module` (the nn.Module whose forward computes the loss; DDP wraps it),
    `trainable()` (name → parameter), `buffers()` (name → buffer that training updates), `batches(epoch)` (the epoch's batches, deterministic),
    `loss(module, batch)` (scalar tensor), `evaluate()` (dev metrics) and `export(stage_dir)` (the result).
    """
    params = dict(stage.trainable())
    # what a checkpoint holds: the trainable weights plus the buffers that training updates (BatchNorm statistics)
    tracked = {**params, **dict(stage.buffers())}
    module = stage.module
    model = module
    if rt.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(module, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    groups = param_groups(params, cfg.optim)
    optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas)
    scales = [g["lr_scale"] for g in groups]
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, [lambda s, k=k: k * lr_factor(s, cfg) for k in scales]
    )
    step = 0
    last = latest_checkpoint(stage_dir)
    if last is not None:
        step = load_checkpoint(last, tracked, optimizer, scheduler)["step"]
        if rt.is_main:
            print(f"[{stage.name}] resuming from {last} (step {step})", flush=True)
    log = MetricsLog(stage_dir, step) if rt.is_main else None

    # batches: each rank takes every world-th batch of an epoch; equal counts keep DDP ranks in step
    epoch_cache: dict[int, list[Any]] = {}

    def micro_batch(index: int) -> Any:
        per_rank = len(stage.batches(0)) // rt.world
        if per_rank == 0:
            raise ValueError(f"[{stage.name}] fewer batches than processes; use less data parallelism")
        epoch, pos = divmod(index, per_rank)
        if epoch not in epoch_cache:
            epoch_cache.clear()
            epoch_cache[epoch] = stage.batches(epoch)[rt.rank :: rt.world][:per_rank]
        return epoch_cache[epoch][pos]

    def checkpoint() -> None:
        if rt.is_main:
            save_checkpoint(stage_dir, step, {k: v.detach() for k, v in tracked.items()}, optimizer, scheduler,
                            {"nonfinite_total": nonfinite_total}, cfg.keep_last)
        rt.barrier()

    def evaluate() -> None:
        if rt.is_main:
            module.eval()
            t0 = time.time()
            with torch.no_grad(), rt.autocast():
                metrics = stage.evaluate()
            module.train()
            row = {"step": step, **{f"dev_{k}": v for k, v in metrics.items()}, "eval_seconds": time.time() - t0}
            log.log(row)
            log.plot()
            shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, float))
            tqdm.write(f"[{stage.name}] step {step}: {shown}")
        rt.barrier()

    module.train()
    nonfinite_run, nonfinite_total = 0, 0
    bar = tqdm(total=cfg.max_steps, initial=step, desc=stage.name, disable=not rt.is_main, dynamic_ncols=True)
    t_last, loss_sum, n_sum = time.time(), 0.0, 0
    while step < cfg.max_steps:
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=rt.device)
        for micro in range(cfg.grad_accum):
            batch = micro_batch(step * cfg.grad_accum + micro)
            sync = micro == cfg.grad_accum - 1 or rt.world == 1
            with (contextlib.nullcontext() if sync else model.no_sync()), rt.autocast():
                loss = stage.loss(model, batch)
            (loss / cfg.grad_accum).backward()
            total += loss.detach() / cfg.grad_accum
        finite = torch.isfinite(total).float()
        if rt.world > 1:  # every rank must agree to skip
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            nonfinite_run += 1
            nonfinite_total += 1
            optimizer.zero_grad(set_to_none=True)
            if nonfinite_run >= cfg.max_nonfinite:
                good = latest_checkpoint(stage_dir)
                raise NonFiniteLossError(
                    f"[{stage.name}] loss was not finite {nonfinite_run} steps in a row (step {step}); the last "
                    f"good checkpoint is {good}. Lower train.optim.lr or check the data, then rerun to resume."
                )
            tqdm.write(f"[{stage.name}] step {step}: non-finite loss, step skipped ({nonfinite_total} so far)")
        else:
            nonfinite_run = 0
            grad_norm = (
                torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.optim.grad_clip)
                if cfg.optim.grad_clip > 0 else torch.zeros(())
            )
            optimizer.step()
            loss_sum, n_sum = loss_sum + total.item(), n_sum + 1
        scheduler.step()
        step += 1
        bar.update(1)
        if rt.is_main and (step % cfg.log_every == 0 or step == cfg.max_steps) and n_sum:
            now = time.time()
            row = {"step": step, "train_loss": loss_sum / n_sum, "train_lr": scheduler.get_last_lr()[0],
                   "grad_norm": float(grad_norm), "seconds_per_step": (now - t_last) / cfg.log_every,
                   "nonfinite_total": nonfinite_total}
            log.log(row)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}")
            t_last, loss_sum, n_sum = now, 0.0, 0
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            evaluate()
        if step % cfg.save_every == 0 or step == cfg.max_steps:
            checkpoint()
    bar.close()
    final = {}
    if rt.is_main and log is not None:
        evals = [r for r in log.rows if any(k.startswith("dev_") for k in r)]
        final = evals[-1] if evals else {}
    return final


def run(recipe: Recipe) -> Path:
    """Run every stage of `recipe` that is not complete yet; returns the run directory."""
    from speech_calm.training.stages import build_stage, stage_class

    rt = setup_runtime(recipe.device)
    run_dir = Path(recipe.run_dir)
    if rt.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        saved = run_dir / "recipe.yaml"
        if saved.is_file():
            sections = sorted({s for name in recipe.stages for s in stage_class(name).sections})
            previous = load_recipe(saved)
            changed = [s for s in ["seed", *sections]
                       if _identity(getattr(previous, s)) != _identity(getattr(recipe, s))]
            if changed:
                raise ConfigError(
                    f"{run_dir} was made by a different recipe (see {saved}): its {', '.join(changed)} settings "
                    f"differ; use a new run_dir, or remove {run_dir} to start over. Only train.* settings (steps, "
                    f"evaluation, saving) and decoding.* settings may change on resume."
                )
        save_recipe(recipe, saved)
    rt.barrier()
    if not recipe.stages:
        raise ConfigError("the recipe lists no stages; set e.g. stages: [encoder, compose]")
    for name in recipe.stages:
        stage_dir = run_dir / name
        if (stage_dir / "done.json").is_file():
            if rt.is_main:
                print(f"[{name}] already complete ({stage_dir / 'done.json'}); skipped", flush=True)
            continue
        seed_everything(recipe.seed + rt.rank)
        stage = build_stage(name, recipe, rt, run_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        stage.setup()
        result = fit(stage, stage.train_config, stage_dir, rt) if stage.train_config.max_steps > 0 else {}
        if rt.is_main:
            stage.export(stage_dir)
            write_json(stage_dir / "done.json", {"seconds": time.time() - t0, "final": result})
            print(f"[{name}] done in {time.time() - t0:.0f} s → {stage_dir}", flush=True)
        rt.barrier()
    if rt.world > 1:
        dist.destroy_process_group()
    return run_dir


def _identity(section: Any) -> Any:
    """The parts of a recipe section that define what is trained (everything but loop and decoding settings:
    a finished run may be decoded with a search chosen later)."""
    data = to_dict(section)

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("train", "decoding")}
        return node

    return strip(data)
