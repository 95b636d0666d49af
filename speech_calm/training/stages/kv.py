"""The key-value arithmetic experiment (paper §4.1, Table 1) as recipe stages.

    kv_data      the three datasets (`text.kv_data`) → kv.data.dir or RUN_DIR/data
    kv_m_a       m_A: a new small LM learns KV-Substitution (it memorises every key's value)
    kv_m_b       m_B: a new small LM learns Numeric-Arithmetic (it never sees a key)
    kv_compose   CALM: bridges between frozen m_A and frozen m_B learn KV-Arithmetic over 20% of the keys
    kv_lora      LoRA in m_B with as many parameters as the bridges, on the same data
    kv_finetune  m_B fully fine-tuned on the same data
    kv_eval      every model on every test set (KV-Arithmetic: held-out keys only) → kv_eval/table.md, .json

m_A and m_B share one character tokenizer, so the composition runs in aligned mode: both read the same
tokens, and anchor position t sees m_A's states for positions <= t only. The three adaptations are made by
`adaptation_stages` from `text.kv.KVExperiment`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from speech_calm.text.experiment import Experiment
from speech_calm.text.kv import (
    DATASETS,
    KVExperiment,
    kv_tokenizer,
    read_rows,
    score,
    table,
)
from speech_calm.text.kv_data import KVSettings, prepare
from speech_calm.text.rows import Row, TextModel
from speech_calm.training.stages.adapt import TableStage, adaptation_stages
from speech_calm.training.stages.base import Stage
from speech_calm.training.stages.compute import ComputeStage
from speech_calm.training.stages.lm import CausalLMStage


class KVDataStage(ComputeStage):
    """kv_data: write the datasets (kept when they exist with the same settings)."""

    name = "kv_data"
    sections = ("kv",)

    def setup(self) -> None:
        d = asdict(self.recipe.kv.data)
        settings = KVSettings(**{k: v for k, v in d.items() if k != "dir"})
        where = KVExperiment.of(self.recipe, self.run_dir).data_dir
        stats = prepare(where, settings)
        if self.rt.is_main:
            print(f"[kv_data] {where}: {stats['compose_keys']} of {settings.num_keys} keys for composition; " +
                  ", ".join(f"{k} {v}" for k, v in stats["rows"].items() if k.endswith("train.jsonl")), flush=True)

    def export(self, stage_dir: Path) -> None:
        pass


class _KVModelStage(CausalLMStage):
    config_group = "kv"
    dataset: str

    def make_tokenizer(self) -> Any:
        return kv_tokenizer(self.recipe.kv.data.alphabet)

    def train_rows(self) -> list[Row]:
        return read_rows(KVExperiment.of(self.recipe, self.run_dir).data_dir, self.dataset, "train")

    def dev_metrics(self, tm: TextModel) -> dict[str, float]:
        data = KVExperiment.of(self.recipe, self.run_dir).data_dir
        rows = read_rows(data, self.dataset, "test", self.train_config.eval_items)
        return {"accuracy": score(tm, rows, self.section.eval_batch_size, self.dataset)}


class KVModelAStage(_KVModelStage):
    """kv_m_a: m_A learns KV-Substitution."""

    name = "kv_m_a"
    dataset = "substitution"
    config_key = "m_a"


class KVModelBStage(_KVModelStage):
    """kv_m_b: m_B learns Numeric-Arithmetic."""

    name = "kv_m_b"
    dataset = "arithmetic"
    config_key = "m_b"


class KVEvalStage(TableStage):
    """kv_eval: Table 1 (accuracy of m_A, m_B, CALM, LoRA, fine-tuned m_B on the three test sets)."""

    name = "kv_eval"
    experiment = KVExperiment

    def begin(self, exp: Experiment) -> None:
        self.kv = exp.settings
        self.tests = {key: read_rows(exp.data_dir, key, "test", answer=self.kv.answer) for key in DATASETS}
        self.results: dict[str, dict[str, float]] = {}
        self.params: dict[str, int] = {}

    def score(self, label: str, tm: TextModel, info: dict[str, Any]) -> None:
        if info:
            self.params[label] = info["trainable"]
        self.results[label] = {key: score(tm, rows, self.kv.eval_batch_size, key) for key, rows in self.tests.items()}

    def report(self) -> tuple[str, str, dict[str, Any]]:
        title = (f"Table 1, key-value arithmetic (accuracy %, {len(self.tests['kv_arithmetic'])} test expressions "
                 f"per dataset)")
        return title, table(self.results, self.params), {"accuracy": self.results,
                                                          "trainable_parameters": self.params}


KVComposeStage, KVLoraStage, KVFinetuneStage = adaptation_stages(KVExperiment, __name__)

STAGES: dict[str, type[Stage]] = {stage.name: stage for stage in (
    KVDataStage, KVModelAStage, KVModelBStage, KVComposeStage, KVLoraStage, KVFinetuneStage, KVEvalStage)}
