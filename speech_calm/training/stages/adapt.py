"""The stages that teach the anchor a text experiment's task: CALM bridges, LoRA (peft), or full fine-tuning.

They differ only in their method; the data and metrics come from the experiment (`text.experiment`), so
`adaptation_stages` makes all three for any experiment: kv_compose / kv_lora / kv_finetune, text_compose /
text_lora / text_finetune. Every variant trains on the same rows with the same loss (target tokens, logits only
there), so their table rows compare like with like. Results: CALM → `bridges.safetensors` (bridges only),
LoRA → `adapter/` (peft), fine-tuning → `model/`; each with `params.json` (trainable parameters, LoRA rank,
bridge connections).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from pathlib import Path
from typing import Any

from speech_calm.files import write_json
from speech_calm.text.experiment import ADAPTATIONS, Experiment
from speech_calm.text.rows import Row, TextModel
from speech_calm.text.variants import Method, build_variant, export_variant
from speech_calm.training.stages.compute import ComputeStage
from speech_calm.training.stages.lm import RowStage


class AdaptStage(RowStage):
    """Train one adaptation (`method`) of the experiment's anchor on the experiment's rows."""

    method: Method
    experiment: type[Experiment]

    def __init__(self, recipe: Any, runtime: Any, run_dir: Path) -> None:
        super().__init__(recipe, runtime, run_dir)
        self.exp = self.experiment.of(recipe, run_dir)

    def setup(self) -> None:
        self.tm, self.info = build_variant(self.method, self.exp.parts(), self.section, self.exp.bridge,
                                           self.rt.device)
        self.module = self.tm.model
        self.rows = self.train_rows()
        self.info["train_rows"] = len(self.rows)  # in params.json: what this variant learnt from
        if self.rt.is_main:
            n, total = self.info["trainable"], self.info["anchor_parameters"]
            extra = f", LoRA rank {self.info['rank']}" if "rank" in self.info else ""
            print(f"[{self.name}] {self.method}: {n / 1e6:.3f} M trainable parameters ({100 * n / total:.2f}% of the "
                  f"anchor's {total / 1e6:.1f} M){extra}; {len(self.rows)} training rows", flush=True)

    def train_rows(self) -> list[Row]:
        return self.exp.adapt_rows()

    def dev_metrics(self, tm: TextModel) -> dict[str, Any]:
        return self.exp.adapt_metrics(tm, self.train_config.eval_items, self.section.eval_batch_size)

    def export(self, stage_dir: Path) -> None:
        export_variant(self.method, self.tm, stage_dir, self.info)


def adaptation_stages(experiment: type[Experiment], module: str) -> tuple[type[AdaptStage], ...]:
    """The stages `{group}_compose`, `{group}_lora`, `{group}_finetune` of `experiment`, in that order, as
    classes of `module` (the experiment's stage module binds them by name, e.g. `KVComposeStage`)."""
    prefix = experiment.__name__.removesuffix("Experiment")
    return tuple(
        type(f"{prefix}{key.title()}Stage", (AdaptStage,), {
            "__doc__": f"{experiment.group}_{key}: {label}, trained on the {experiment.group} experiment's rows.",
            "__module__": module, "name": f"{experiment.group}_{key}", "method": method, "experiment": experiment,
            "config_group": experiment.group, "config_key": key,
        })
        for key, (method, label) in ADAPTATIONS.items()
    )


class TableStage(ComputeStage):
    """`{group}_eval`: every model of the run (`Experiment.models`: m_A, m_B and each finished adaptation), one
    at a time, scored on the experiment's test sets → `table.md` and `table.json` (with `eval_seconds`)."""

    experiment: type[Experiment]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "experiment" in vars(cls):
            cls.sections = (cls.experiment.group,)
        super().__init_subclass__(**kwargs)

    @abstractmethod
    def begin(self, exp: Experiment) -> None:
        """Read the test sets (before the first model loads)."""

    @abstractmethod
    def score(self, label: str, tm: TextModel, info: dict[str, Any]) -> None:
        """Score one model (its row is kept until `report`)."""

    @abstractmethod
    def report(self) -> tuple[str, str, dict[str, Any]]:
        """(a title to print, the Markdown table, what table.json holds besides `eval_seconds`)."""

    def setup(self) -> None:
        exp = self.experiment.of(self.recipe, self.run_dir)
        self.begin(exp)
        t0 = time.time()
        for label, tm, info in exp.models(self.rt.device):
            self.score(label, tm, info)
            del tm  # one model in memory at a time (each holds its own copy of the anchor)
        self.seconds = time.time() - t0
        title, self.markdown, self.table = self.report()
        if self.rt.is_main:
            print(f"\n{title}\n\n{self.markdown}\n" if title else f"\n{self.markdown}\n", flush=True)

    def export(self, stage_dir: Path) -> None:
        (stage_dir / "table.md").write_text(self.markdown + "\n", encoding="utf-8")
        write_json(stage_dir / "table.json", {**self.table, "eval_seconds": self.seconds})
