"""The key-value arithmetic task (paper §4.1): rows, the shared character tokenizer, accuracy, Table 1.

Every dataset row is `src=` → `tgt` in one format for all three datasets, read character by character by
both models (one shared tokenizer, so the composition runs in aligned mode):

    KV-Substitution     <bos> pjm-sy=       631-400<eos>    (m_A's task: keys → values)
    Numeric-Arithmetic  <bos> 631-400=      231<eos>        (m_B's task: 136 - 4 = 132)
    KV-Arithmetic       <bos> pjm-sy=       231<eos>        (what only the composition can do)

(numbers zero-padded and least-significant digit first by default; see `speech_calm.text.kv_data`).

With `answer: values_then_result` the KV-Arithmetic target shows its work — the values, then the result:
`pjm-sy=` → `631-400=231`. In aligned mode the composed model then writes what m_A predicts (the values; the
bridges learn to pass on m_A's next-token belief, which does not depend on the key: the recipe's bridges read
m_A's state at their own position only, `bridge.window: 1`, and may read nothing, `bridge.null_slot`) and
computes the result with the anchor's own arithmetic (half of m_B's rows stand behind a prefix of random
letters, `xq+ab=631-400=`, so that its arithmetic works where the values start after the keys; m_B's rows mixed
into the composition's, `kv.mix_arithmetic`, keep the bridges out of it). Every model is scored on its final
answer (`final_answer`): the number after the last '=' it writes (KV-Substitution: what it writes before any
'=').
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speech_calm.files import read_jsonl
from speech_calm.schema import ConfigError
from speech_calm.text.experiment import Experiment
from speech_calm.text.rows import Row, TextModel
from speech_calm.text.variants import Parts
from speech_calm.towers.load import TowerConfig

DATASETS = {"substitution": "KV-Substitution", "arithmetic": "Numeric-Arithmetic", "kv_arithmetic": "KV-Arithmetic"}

SYMBOLS = "0123456789+-*="


def kv_tokenizer(alphabet: str) -> Any:
    """The character tokenizer both models share: digits, operators, '=' and the keys' alphabet."""
    from speech_calm.towers.small_lm import char_tokenizer

    return char_tokenizer(SYMBOLS + "".join(c for c in alphabet if c not in SYMBOLS))


def read_rows(data_dir: str | Path, dataset: str, split: str, limit: int | None = None,
              answer: str = "result") -> list[Row]:
    """Rows of `data_dir/dataset/split.jsonl` (made by `speech_calm.text.kv_data`): prompt `src=`, target `tgt`
    (KV-Arithmetic with answer="values_then_result": `values=tgt`)."""
    if answer not in ("result", "values_then_result"):
        raise ValueError(f"answer must be result or values_then_result, got {answer!r}")
    if dataset not in DATASETS:
        raise ValueError(f"unknown KV dataset {dataset!r}; one of {', '.join(DATASETS)}")
    def parse(item: dict) -> Row:
        target = item["tgt"]
        if answer == "values_then_result" and dataset == "kv_arithmetic":
            target = item["values"] + "=" + target
        return Row(item["src"] + "=", target)

    return read_jsonl(Path(data_dir) / dataset / f"{split}.jsonl", parse, "a KV row",
                      f"make the data with python data_prep/kv_arithmetic.py --out {data_dir} (or run the recipe's "
                      f"kv_data stage)", limit)


def final_answer(dataset: str, text: str) -> str:
    """What an output answers: KV-Substitution the expression before any '=', the others the number after
    the last '=' (so a result written after its values counts, and values alone do not)."""
    text = text.strip()
    return text.split("=", 1)[0] if dataset == "substitution" else text.rsplit("=", 1)[-1]


def accuracy(rows: Sequence[Row], hyps: Sequence[str], dataset: str = "") -> float:
    """Exact-match accuracy of the final answers (`final_answer`), in percent."""
    if len(rows) != len(hyps):
        raise ValueError(f"{len(rows)} rows but {len(hyps)} answers")
    hits = sum(final_answer(dataset, h) == final_answer(dataset, r.target) for r, h in zip(rows, hyps))
    return 100.0 * hits / max(1, len(rows))


def max_answer_length(rows: Sequence[Row]) -> int:
    """Generation cap in characters (= tokens): the longest target, plus the longest prompt (any model may
    write the values before the result), plus a little room."""
    return max(len(r.target) for r in rows) + max(len(r.prompt) for r in rows) + 3


def table(results: dict[str, dict[str, float]], params: dict[str, int] | None = None) -> str:
    """Table 1 as Markdown: one column per model, one row per dataset (accuracy %), trainable parameters below."""
    models = list(results)
    lines = ["| data | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for key, name in DATASETS.items():
        label = f"{name} (held-out keys)" if key == "kv_arithmetic" else name
        cells = [f"{results[m][key]:.1f}" if key in results[m] else "–" for m in models]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if params:
        lines.append("| trained parameters | " + " | ".join(_count(params.get(m)) for m in models) + " |")
    return "\n".join(lines)


def _count(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def score(tm: TextModel, rows: list[Row], batch_size: int, dataset: str) -> float:
    """Greedy exact-match accuracy (%) of the final answers on `rows`."""
    return accuracy(rows, tm.generate(rows, tm.options(max_answer_length(rows)), batch_size), dataset)


class KVExperiment(Experiment):
    """Key-value arithmetic in a run: m_A and m_B from its kv_m_a / kv_m_b stages, the data from kv_data."""

    group = "kv"

    @property
    def data_dir(self) -> Path:
        """Where kv_data writes the three datasets (`kv.data.dir`, else RUN_DIR/data)."""
        return Path(self.settings.data.dir) if self.settings.data.dir else self.run_dir / "data"

    def parts(self) -> Parts:
        """m_B (the anchor) and m_A as this run's stages left them, in float32 on every device (they are tiny,
        and were trained in float32: bf16 would change what they compute)."""
        return Parts(TowerConfig(source=str(self.run_dir / "kv_m_b" / "model"), dtype="float32"),
                     str(self.run_dir / "kv_m_a" / "model"))

    def adapt_rows(self) -> list[Row]:
        """KV-Arithmetic over the composition keys, plus `kv.mix_arithmetic` × as many Numeric-Arithmetic rows."""
        kv = self.settings
        if kv.mix_arithmetic < 0:
            raise ConfigError(f"kv.mix_arithmetic must be >= 0 (a share of the KV-Arithmetic rows), got "
                              f"{kv.mix_arithmetic}")
        rows = read_rows(self.data_dir, "kv_arithmetic", "train", answer=kv.answer)
        extra = round(kv.mix_arithmetic * len(rows))
        return rows + (read_rows(self.data_dir, "arithmetic", "train", extra) if extra else [])

    def adapt_metrics(self, tm: TextModel, eval_items: int, batch_size: int) -> dict[str, Any]:
        """Accuracy on new expressions over the composition keys (the held-out keys are kept for kv_eval)."""
        rows = read_rows(self.data_dir, "kv_arithmetic", "dev", eval_items, answer=self.settings.answer)
        return {"accuracy": score(tm, rows, batch_size, "kv_arithmetic")}
