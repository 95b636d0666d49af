"""Stage `compose`: the frozen m_A and the frozen anchor joined by trainable bridges (or the projector baseline).

Tasks by prompt: transcribe (→ Telugu) and translate (→ English); every training utterance gives one row per
task it has a target for. The loss is on target tokens only, with logits at target positions only. m_A is
frozen, so with `cache_tower_states` its states for the training set are computed once (only the layers the
bridges read) instead of at every step. Result: `compose/bridges.safetensors` (bridges alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from speech_calm.core.batch import bucket_batches, chunks
from speech_calm.core.checkpoint import save_bridges
from speech_calm.core.composition import Composition
from speech_calm.core.tower import TowerOutput
from speech_calm.metrics import translation_scores
from speech_calm.speech.data import (
    AudioStore,
    Utterance,
    dev_subset,
    read_split,
)
from speech_calm.speech.indic import language_script
from speech_calm.speech.metrics import transcript_scores
from speech_calm.speech.model import TOWER, load_speech_model
from speech_calm.training.recipe import tower_source
from speech_calm.training.stages.base import Stage


def needed_layers(model: nn.Module) -> list[int]:
    """The m_A layers the bridges (or the projector) read."""
    if isinstance(model, Composition):
        return sorted({i for i, _ in model.connections[TOWER]})
    return [model.tower_layer]


def pad_states(states: list[dict[int, torch.Tensor]], num_layers: int, device: torch.device,
               positions: list[torch.Tensor] | None = None) -> TowerOutput:
    """Cached per-utterance states {layer: (S_i, D)} (and slot positions (S_i,)) → a TowerOutput with
    (B, S, D) for the cached layers."""
    lengths = [next(iter(s.values())).shape[0] for s in states]
    width = max(lengths)
    layers = sorted(states[0])
    hidden: list[torch.Tensor | None] = [None] * num_layers
    for layer in layers:
        d = states[0][layer].shape[-1]
        x = torch.zeros(len(states), width, d, device=device)
        for i, s in enumerate(states):
            x[i, : lengths[i]] = s[layer].to(device)
        hidden[layer] = x
    mask = torch.arange(width, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]
    padded = None
    if positions is not None:
        padded = torch.zeros(len(states), width, dtype=torch.long, device=device)
        for i, c in enumerate(positions):
            padded[i, : lengths[i]] = c.to(device)
    return TowerOutput(tuple(hidden), mask, positions=padded)  # type: ignore[arg-type]


class ComposeStage(Stage):
    name = "compose"
    sections = ("data", "encoder", "compose")  # m_A is the encoder stage's unless compose.tower.source is set

    def __init__(self, recipe: Any, runtime: Any, run_dir: Path) -> None:
        super().__init__(recipe, runtime, run_dir)
        self.cfg = recipe.compose
        self.train_config = self.cfg.train

    def setup(self) -> None:
        cfg, dev = self.cfg, self.rt.device
        self.speech = load_speech_model(cfg, tower_source(self.recipe, self.run_dir), dev)
        self.module = model = self.speech.model
        lang = [cfg.language]
        self.train = read_split(self.recipe.data.dirs, "train", lang)
        self.items = [(i, task) for i, u in enumerate(self.train)
                      for task in self.speech.training_tasks(bool(u.translation))]
        self.dev_items = dev_subset(read_split(self.recipe.data.dirs, "dev", lang), self.train_config.eval_items)
        self.audio = AudioStore()
        self.layers = needed_layers(model)
        self.states: list[dict[int, torch.Tensor]] | None = None
        self.positions: list[torch.Tensor] | None = None
        if cfg.cache_tower_states:
            self.states, self.positions = self._tower_states(self.train)
        split = self.speech.split_characters([u.text for u in self.train]) if cfg.char_targets else []
        if split and self.rt.is_main:
            print(f"[compose] warning: the anchor writes {len(split)} character(s) of the training transcripts as "
                  f"several tokens ({''.join(split[:10])}...): transcripts are written as their pieces"
                  + ("; the offset prior's character count drifts there" if cfg.bridge.offset_bias else ""),
                  flush=True)
        if self.rt.is_main:
            n_train = sum(p.numel() for _, p in model.trainable_parameters())
            n_anchor = sum(p.numel() for p in model.anchor.parameters())
            what = "prefix projector" if cfg.bridge.type == "prefix" else "cross-attention bridges"
            print(f"[compose] {what}: {n_train / 1e6:.2f} M trainable parameters "
                  f"({100 * n_train / n_anchor:.2f}% of the anchor's {n_anchor / 1e6:.0f} M); "
                  f"{len(self.items)} training rows per epoch from "
                  f"{len(self.train)} utterances", flush=True)

    def _tower_states(self, utts: list[Utterance]) -> tuple[list[dict[int, torch.Tensor]],
                                                            list[torch.Tensor] | None]:
        """m_A states of the layers the bridges read, per utterance, computed once (frozen m_A), and the
        slots' character positions when the tower gives them (CTC compression)."""
        states: list[dict[int, torch.Tensor]] = [{} for _ in utts]
        chars: list[torch.Tensor] = [torch.zeros(0, dtype=torch.long) for _ in utts]
        has_chars = False
        order = sorted(range(len(utts)), key=lambda i: utts[i].duration)
        tower = self.speech.tower
        bar = tqdm(total=len(utts), desc="m_A states", disable=not self.rt.is_main, dynamic_ncols=True)
        for group in chunks(order, self.cfg.eval_batch_size):
            audio, lens = self.audio.batch([utts[i] for i in group])
            with torch.no_grad(), self.rt.autocast():
                out = tower(audio.to(self.rt.device), lens.to(self.rt.device))
            for row, i in enumerate(group):
                n = int(out.mask[row].sum())
                states[i] = {layer: out.hidden_states[layer][row, :n].float().cpu() for layer in self.layers}
                if out.positions is not None:
                    has_chars = True
                    chars[i] = out.positions[row, :n].cpu()
            bar.update(len(group))
        bar.close()
        return states, chars if has_chars else None

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        return list(self.module.trainable_parameters())

    def batches(self, epoch: int) -> list[Any]:
        t = self.train_config
        groups = bucket_batches([self.train[i].duration for i, _ in self.items], t.batch_size,
                                t.max_batch_seconds, self.recipe.seed, epoch)
        return [[self.items[k] for k in g] for g in groups]

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        utts = [self.train[i] for i, _ in batch]
        tasks = [task for _, task in batch]
        targets = [self.speech.training_target(t, u.text, u.translation) for u, t in zip(utts, tasks)]
        if self.states is not None:
            chars = [self.positions[i] for i, _ in batch] if self.positions is not None else None
            outputs = {TOWER: pad_states([self.states[i] for i, _ in batch], self.speech.tower.num_layers,
                                         self.rt.device, chars)}
            return self.speech.loss(model, outputs, tasks, targets)
        audio, lens = self.audio.batch(utts)
        inputs = {TOWER: {"audio": audio.to(self.rt.device), "audio_lens": lens.to(self.rt.device)}}
        return self.speech.loss(model, None, tasks, targets, tower_inputs=inputs)

    def evaluate(self) -> dict[str, float]:
        out: dict[str, float] = {}
        tasks, dev = list(self.cfg.tasks), self.rt.device
        losses: list[float] = []
        refs: dict[str, list[str]] = {task: [] for task in tasks}
        hyps: dict[str, list[str]] = {task: [] for task in tasks}
        for group in chunks(self.dev_items, self.cfg.eval_batch_size):
            audio, lens = self.audio.batch(group)
            # chained, one search answers both tasks; else each task searches the items it has references for
            said = self.speech.generate_tasks(tasks, audio, lens) if self.speech.shared_search(tasks) else None
            for task in tasks:
                rows = [k for k, u in enumerate(group) if _target(u, task)]
                if not rows:
                    continue
                pick = torch.tensor(rows)
                inputs = {TOWER: {"audio": audio[pick].to(dev), "audio_lens": lens[pick].to(dev)}}
                targets = [self.speech.training_target(task, group[k].text, group[k].translation) for k in rows]
                losses.append(float(self.speech.loss(self.module, None, [task] * len(rows), targets, inputs)))
                hyps[task] += ([said[task][k] for k in rows] if said is not None
                               else self.speech.generate(task, audio[pick], lens[pick]))
                refs[task] += [_target(group[k], task) for k in rows]
        for task in tasks:
            if task == "transcribe":
                out.update(transcript_scores(refs[task], hyps[task], language_script(self.cfg.language)))
            else:
                out.update(translation_scores(refs[task], hyps[task]))
            if hyps[task]:
                out[f"example_{task}"] = f"{refs[task][0]} → {hyps[task][0]}"  # type: ignore[assignment]
        out["loss"] = sum(losses) / max(1, len(losses))
        return out

    def export(self, stage_dir: Path) -> None:
        save_bridges(self.module, stage_dir / "bridges.safetensors")


def _target(utt: Utterance, task: str) -> str | None:
    """The reference for a task: the transcript, or the English translation when there is one."""
    return utt.text if task == "transcribe" else utt.translation
