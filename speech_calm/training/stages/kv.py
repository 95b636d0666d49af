"""The key-value arithmetic experiment (paper §4.1, Table 1) as recipe stages.

    kv_data      the three datasets (data_prep/kv_arithmetic.py) → kv.data.dir or RUN_DIR/data
    kv_m_a       m_A: a new small LM learns KV-Substitution (it memorises every key's value)
    kv_m_b       m_B: a new small LM learns Numeric-Arithmetic (it never sees a key)
    kv_compose   CALM: bridges between frozen m_A and frozen m_B learn KV-Arithmetic over 20% of the keys
    kv_lora      LoRA in m_B with as many parameters as the bridges, on the same data
    kv_finetune  m_B fully fine-tuned on the same data
    kv_eval      every model on every test set (KV-Arithmetic: held-out keys only) → kv_eval/table.md, .json

m_A and m_B share one character tokenizer, so the composition runs in aligned mode: both read the same
tokens, and anchor position t sees m_A's states for positions <= t only.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from speech_calm.core.bridge import BridgeConfig
from speech_calm.files import write_json
from speech_calm.schema import ConfigError
from speech_calm.text.kv import (
    DATASETS,
    accuracy,
    kv_tokenizer,
    max_answer_length,
    read_rows,
    table,
)
from speech_calm.text.rows import Row, TextModel
from speech_calm.text.variants import Parts, load_plain, load_variant
from speech_calm.towers.load import TowerConfig
from speech_calm.training.stages.adapt import AdaptStage
from speech_calm.training.stages.compute import ComputeStage
from speech_calm.training.stages.lm import MODEL_DIR, CausalLMStage


def data_dir(recipe: Any, run_dir: Path) -> Path:
    return Path(recipe.kv.data.dir) if recipe.kv.data.dir else run_dir / "data"


def kv_parts(recipe: Any, run_dir: Path) -> Parts:
    """m_B (the anchor) and m_A as this run's stages left them, in float32 on every device (they are tiny, and
    were trained in float32: bf16 would change what they compute)."""
    return Parts(TowerConfig(source=str(run_dir / "kv_m_b" / MODEL_DIR), dtype="float32"),
                 str(run_dir / "kv_m_a" / MODEL_DIR))


def score(tm: TextModel, rows: list[Row], batch_size: int, dataset: str) -> float:
    """Greedy exact-match accuracy (%) of the final answers on `rows`."""
    return accuracy(rows, tm.generate(rows, tm.options(max_answer_length(rows)), batch_size), dataset)


class KVDataStage(ComputeStage):
    """kv_data: write the datasets (kept when they exist with the same settings)."""

    name = "kv_data"

    def setup(self) -> None:
        from data_prep.kv_arithmetic import KVSettings, prepare

        d = asdict(self.recipe.kv.data)
        settings = KVSettings(**{k: v for k, v in d.items() if k != "dir"})
        stats = prepare(data_dir(self.recipe, self.run_dir), settings)
        if self.rt.is_main:
            print(f"[kv_data] {data_dir(self.recipe, self.run_dir)}: {stats['compose_keys']} of "
                  f"{settings.num_keys} keys for composition; " +
                  ", ".join(f"{k} {v}" for k, v in stats["rows"].items() if k.endswith("train.jsonl")), flush=True)

    def export(self, stage_dir: Path) -> None:
        pass


class _KVModelStage(CausalLMStage):
    config_group = "kv"
    dataset: str

    def make_tokenizer(self) -> Any:
        return kv_tokenizer(self.recipe.kv.data.alphabet)

    def train_rows(self) -> list[Row]:
        return read_rows(data_dir(self.recipe, self.run_dir), self.dataset, "train")

    def dev_metrics(self, tm: TextModel) -> dict[str, float]:
        rows = read_rows(data_dir(self.recipe, self.run_dir), self.dataset, "test", self.train_config.eval_items)
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


class _KVAdaptStage(AdaptStage):
    config_group = "kv"

    def bridge(self) -> BridgeConfig:
        return self.recipe.kv.compose.bridge

    def parts(self) -> Parts:
        return kv_parts(self.recipe, self.run_dir)

    def train_rows(self) -> list[Row]:
        """KV-Arithmetic over the composition keys, plus `kv.mix_arithmetic` × as many Numeric-Arithmetic rows."""
        kv, data = self.recipe.kv, data_dir(self.recipe, self.run_dir)
        if kv.mix_arithmetic < 0:
            raise ConfigError(f"kv.mix_arithmetic must be >= 0 (a share of the KV-Arithmetic rows), got "
                              f"{kv.mix_arithmetic}")
        rows = read_rows(data, "kv_arithmetic", "train", answer=kv.answer)
        extra = round(kv.mix_arithmetic * len(rows))
        return rows + (read_rows(data, "arithmetic", "train", extra) if extra else [])

    def dev_metrics(self, tm: TextModel) -> dict[str, float]:
        """Accuracy on new expressions over the composition keys (the held-out keys are kept for kv_eval)."""
        rows = read_rows(data_dir(self.recipe, self.run_dir), "kv_arithmetic", "dev", self.train_config.eval_items,
                         answer=self.recipe.kv.answer)
        return {"accuracy": score(tm, rows, self.section.eval_batch_size, "kv_arithmetic")}


class KVComposeStage(_KVAdaptStage):
    """kv_compose: CALM bridges between m_A and m_B."""

    name = "kv_compose"
    method = "calm"
    config_key = "compose"


class KVLoraStage(_KVAdaptStage):
    """kv_lora: LoRA in m_B, parameter count matched to the bridges."""

    name = "kv_lora"
    method = "lora"
    config_key = "lora"


class KVFinetuneStage(_KVAdaptStage):
    """kv_finetune: every weight of m_B trains."""

    name = "kv_finetune"
    method = "finetune"
    config_key = "finetune"


class KVEvalStage(ComputeStage):
    """kv_eval: Table 1 (accuracy of m_A, m_B, CALM, LoRA, fine-tuned m_B on the three test sets)."""

    name = "kv_eval"

    def setup(self) -> None:
        kv = self.recipe.kv
        run, dev = self.run_dir, self.rt.device
        parts = kv_parts(self.recipe, run)
        data = data_dir(self.recipe, run)
        tests = {key: read_rows(data, key, "test", answer=kv.answer) for key in DATASETS}
        self.results: dict[str, dict[str, float]] = {}
        self.params: dict[str, int] = {}
        t0 = time.time()
        for label, method, stage in (("m_A", None, None), ("m_B", None, None), ("CALM", "calm", "kv_compose"),
                                     ("LoRA", "lora", "kv_lora"), ("m_B fine-tuned", "finetune", "kv_finetune")):
            if method is None:  # a model on its own
                tm = load_plain(parts.tower if label == "m_A" else parts.anchor.source, parts, dev)
            elif (run / stage / "done.json").is_file():
                tm, info = load_variant(method, parts, run / stage, kv.compose.bridge, dev)  # type: ignore[arg-type]
                self.params[label] = info["trainable"]
            else:
                continue  # a recipe without that stage: no column
            self.results[label] = {key: score(tm, rows, kv.eval_batch_size, key) for key, rows in tests.items()}
        self.seconds = time.time() - t0
        self.markdown = table(self.results, self.params)
        if self.rt.is_main:
            print(f"\nTable 1, key-value arithmetic (accuracy %, {len(tests['kv_arithmetic'])} test expressions "
                  f"per dataset)\n\n{self.markdown}\n", flush=True)

    def export(self, stage_dir: Path) -> None:
        (stage_dir / "table.md").write_text(self.markdown + "\n", encoding="utf-8")
        write_json(stage_dir / "table.json", {"accuracy": self.results, "trainable_parameters": self.params,
                                               "eval_seconds": self.seconds})
