"""Stage `cascade`, and the cascade baselines it belongs to: m_A's greedy CTC transcript → the anchor
translating that text.

A cascade is what CALM must beat to be worth its bridges: the two frozen models in a pipeline, text between
them. The anchor reads a prompt in the text path's format (`recipe.cascade`)::

    Translate Telugu to English.

    Telugu: <example transcript>          ← `shots` fixed examples: the first of the training manifests
    English: <its translation>

    Telugu: <m_A's CTC transcript>
    English:                              ← the anchor writes " <translation>\\n"

- few-shot: the frozen anchor with `cascade.shots` examples (no training; `cascade_model(..., adapted=False)`);
- adapted: this stage trains LoRA adapters in the anchor (the text path's LoRA, `core.baselines`; rank matched
  to the compose stage's bridges) on the training manifests' reference transcript → translation pairs with
  `cascade.adapted_shots` examples per prompt; at test it reads m_A's transcripts. Result: `cascade/adapter/`
  (peft) and `cascade/params.json` (trainable parameters, rank, the bridges' count it was matched to).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speech_calm.core.baselines import (
    AnchorModel,
    add_lora,
    matched_lora_rank,
    parameter_count,
)
from speech_calm.metrics import translation_scores
from speech_calm.speech.config import CascadeStageConfig
from speech_calm.speech.data import dev_subset, read_split
from speech_calm.speech.model import bridge_parameters, compressed
from speech_calm.text.rows import Row, TextModel
from speech_calm.text.variants import Parts, export_variant, load_variant
from speech_calm.towers.load import load_anchor, load_speech_tower
from speech_calm.training.recipe import Recipe, tower_source
from speech_calm.training.stages.lm import RowStage

Pair = tuple[str, str]  # (transcript, English translation)

END = "\n"  # an answer ends at the line break, as in the examples


def train_pairs(recipe: Recipe, split: str = "train") -> list[Pair]:
    """(transcript, translation) of the `split` manifests' utterances in compose.language that have English,
    in manifest order."""
    utts = read_split(recipe.data.dirs, split, [recipe.compose.language])
    return [(u.text, u.translation) for u in utts if u.translation]


def examples(recipe: Recipe, k: int) -> list[Pair]:
    """The few-shot examples: the first `k` training pairs (fixed before any test item is seen)."""
    pairs = train_pairs(recipe)[:k]
    if len(pairs) < k:
        raise ValueError(f"{k}-shot cascade prompts need {k} training utterances with a translation; "
                         f"found {len(pairs)}")
    return pairs


def prompt(cfg: CascadeStageConfig, language: str, shots: Sequence[Pair], source: str) -> str:
    """The prompt for one transcript: the instruction, the examples, then the transcript (ends "English:")."""
    name = language.capitalize()
    blocks = [cfg.instruction.format(language=name)] + [f"{name}: {s}\nEnglish: {t}" for s, t in shots]
    return "\n\n".join([*blocks, f"{name}: {source.strip()}\nEnglish:"])


def rows(cfg: CascadeStageConfig, language: str, shots: Sequence[Pair], pairs: Sequence[Pair]) -> list[Row]:
    """One row per (source, reference) with the given examples (never an example of itself)."""
    return [Row(prompt(cfg, language, [p for p in shots if p[0] != src], src), " " + tgt.strip(), source=src)
            for src, tgt in pairs]


def translate(tm: TextModel, recipe: Recipe, transcripts: Sequence[str], shots: Sequence[Pair]) -> list[str]:
    """The anchor's English for each transcript (greedy, until the line ends)."""
    cfg = recipe.cascade
    items = rows(cfg, recipe.compose.language, shots, [(t, "") for t in transcripts])
    return tm.generate(items, tm.options(cfg.max_new_tokens), cfg.eval_batch_size)


def cascade_model(recipe: Recipe, run_dir: Path, adapted: bool, device: Any = "cpu") -> tuple[TextModel, list[Pair],
                                                                                                dict[str, Any]]:
    """The cascade's translator: the frozen anchor (few-shot) or the anchor with this run's `cascade` stage
    adapters; with the examples its prompts carry and facts about it ({"trainable": ...})."""
    cfg, a = recipe.cascade, recipe.compose.anchor
    if adapted:
        tm, info = load_variant("lora", Parts(a, "", END), Path(run_dir) / "cascade", recipe.compose.bridge, device)
        return tm, examples(recipe, cfg.adapted_shots), info
    anchor, tokenizer = load_anchor(a.source, device, a.dtype, a.trust_remote_code)
    return TextModel(AnchorModel(anchor), tokenizer, END), examples(recipe, cfg.shots), {"trainable": 0}


class CascadeStage(RowStage):
    """`cascade`: LoRA in the anchor on transcript → translation text, for the adapted cascade."""

    name = "cascade"
    # the anchor and the bridges it is matched to (compose), m_A's width (encoder, unless compose.tower.source)
    sections = ("data", "encoder", "compose", "cascade")

    @property
    def section(self) -> CascadeStageConfig:
        return self.recipe.cascade

    def setup(self) -> None:
        cfg, compose, dev = self.section, self.recipe.compose, self.rt.device
        anchor, tokenizer = load_anchor(compose.anchor.source, dev, compose.anchor.dtype,
                                        compose.anchor.trust_remote_code)
        tower = load_speech_tower(tower_source(self.recipe, self.run_dir), "cpu", compose.tower.dtype,
                                  compose.tower.trust_remote_code)
        bridges = bridge_parameters(anchor, compressed(tower, compose), compose)  # what CALM trains
        del tower
        n_anchor = sum(p.numel() for p in anchor.parameters())
        rank = cfg.rank or matched_lora_rank(anchor, cfg.targets, bridges)
        model = AnchorModel(add_lora(anchor, rank, cfg.targets, cfg.alpha_ratio, cfg.dropout), "lora").to(dev)
        self.module = model
        self.tm = TextModel(model, tokenizer, END)
        self.shots = examples(self.recipe, cfg.adapted_shots)
        self.rows = rows(cfg, compose.language, self.shots, train_pairs(self.recipe))
        self.info = {"anchor_parameters": n_anchor, "bridge_parameters": bridges, "rank": rank,
            "trainable": parameter_count(model.trainable_parameters()), "train_rows": len(self.rows)}
        if self.rt.is_main:
            print(f"[cascade] LoRA rank {rank}: {self.info['trainable'] / 1e6:.3f} M trainable parameters (the "
                  f"bridges: {bridges / 1e6:.3f} M); {len(self.rows)} transcript → translation rows", flush=True)

    def train_rows(self) -> list[Row]:
        return self.rows

    def dev_metrics(self, tm: TextModel) -> dict[str, Any]:
        """BLEU and chrF++ of the dev manifests' reference transcripts translated (the text the stage learns
        from; the results table feeds it m_A's transcripts instead)."""
        utts = dev_subset(read_split(self.recipe.data.dirs, "dev", [self.recipe.compose.language]),
                          self.train_config.eval_items)
        pairs = [(u.text, u.translation) for u in utts if u.translation]
        if not pairs:
            return {}
        hyps = translate(tm, self.recipe, [s for s, _ in pairs], self.shots)
        return {**translation_scores([t for _, t in pairs], hyps), "example": f"{pairs[0][0]} → {hyps[0]}"}

    def export(self, stage_dir: Path) -> None:
        export_variant("lora", self.tm, stage_dir, self.info)
