"""Base of the stages that teach the anchor a task: CALM bridges, LoRA (peft), or full fine-tuning.

kv_compose / kv_lora / kv_finetune and text_compose / text_lora / text_finetune differ only in their data
and metrics, which subclasses provide; the method comes from the stage. Every variant trains on the same
rows with the same loss (target tokens, logits only there), so their table rows compare like with like.
Results: CALM → `bridges.safetensors` (bridges only), LoRA → `adapter/` (peft), fine-tuning → `model/`;
each with `params.json` (trainable parameters, LoRA rank, bridge connections).
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

from speech_calm.core.bridge import BridgeConfig
from speech_calm.text.variants import Method, Parts, build_variant, export_variant
from speech_calm.training.stages.lm import RowStage


class AdaptStage(RowStage):
    """Train one variant of the anchor on `train_rows()`; subclasses set `method` and the hooks below."""

    method: Method

    @abstractmethod
    def bridge(self) -> BridgeConfig:
        """CALM's bridge settings (LoRA matches their parameter count)."""

    @abstractmethod
    def parts(self) -> Parts:
        """Where the anchor and m_A come from."""

    def setup(self) -> None:
        self.tm, self.info = build_variant(self.method, self.parts(), self.section, self.bridge(), self.rt.device)
        self.module = self.tm.model
        self.rows = self.train_rows()
        self.info["train_rows"] = len(self.rows)  # in params.json: what this variant learnt from
        if self.rt.is_main:
            n, total = self.info["trainable"], self.info["anchor_parameters"]
            extra = f", LoRA rank {self.info['rank']}" if "rank" in self.info else ""
            print(f"[{self.name}] {self.method}: {n / 1e6:.3f} M trainable parameters ({100 * n / total:.2f}% of the "
                  f"anchor's {total / 1e6:.1f} M){extra}; {len(self.rows)} training rows", flush=True)

    def export(self, stage_dir: Path) -> None:
        export_variant(self.method, self.tm, stage_dir, self.info)
