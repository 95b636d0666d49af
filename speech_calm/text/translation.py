"""The Telugu→English translation task: pairs and monolingual text, few-shot prompts, scores, forgetting.

Prompts are few-shot, as the paper evaluates translation (the same format in training, so every model is
scored on the format it was trained on)::

    Translate Telugu to English.

    Telugu: <example 1>
    English: <its translation>

    Telugu: <the sentence>
    English:                      ← target: " <translation>\\n" (an answer ends at the line break)

Forgetting is measured as the anchor's perplexity on English text that has nothing to do with the task
(`ENGLISH_TEXT`, or a file): CALM leaves the anchor's weights alone, so without m_A input it is the anchor,
bit for bit; LoRA and fine-tuning change what the anchor computes on everything.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speech_calm.files import read_jsonl
from speech_calm.metrics import translation_scores
from speech_calm.text.experiment import Experiment
from speech_calm.text.rows import Row, TextModel
from speech_calm.text.variants import Parts

Pair = tuple[str, str]

END = "\n"  # what ends an answer

# General English, unrelated to the templates the models are trained on (written for this check).
ENGLISH_TEXT = """\
The river was high after a week of rain, and the old bridge near the market had been closed since Monday.
Farmers who usually crossed it before sunrise now walked an extra hour to reach the road to town.
Most of them did not complain; the water would go down, as it always did, and the bridge would open again.
In the meantime the tea stall on the far bank did better business than it had all year.
The owner, a patient man with a loud radio, kept a notebook of everyone who owed him money.
He said the notebook was older than his son and more reliable than the weather report.
Children from the school on the hill came down in the afternoon to watch the water.
Their teacher used the flood to explain how rivers carry soil from the mountains to the sea.
By the end of the month the fields on both sides were covered with a thin layer of fresh mud.
Everyone agreed that next year's harvest would be a good one.
"""


def read_pairs(data_dir: str | Path, split: str, limit: int | None = None) -> list[Pair]:
    """(Telugu, English) pairs of `data_dir/split.jsonl` (made by data_prep/translation.py)."""
    return read_jsonl(Path(data_dir) / f"{split}.jsonl", lambda row: (row["src"], row["tgt"]), "a pair",
                      f"prepare the text data first, e.g. python data_prep/translation.py --source synthetic "
                      f"--out {data_dir}", limit)


def read_mono(data_dir: str | Path, limit: int | None = None) -> list[str]:
    """Telugu monolingual lines of `data_dir/mono.jsonl`."""
    return read_jsonl(Path(data_dir) / "mono.jsonl", lambda row: row["text"], "a text line",
                      "prepare the text data with data_prep/translation.py", limit)


def prompt(instruction: str, shots: Sequence[Pair], src: str) -> str:
    """The few-shot prompt for `src` (ends with "English:"; the answer follows after a space)."""
    blocks = [instruction] + [f"Telugu: {s}\nEnglish: {t}" for s, t in shots] + [f"Telugu: {src}\nEnglish:"]
    return "\n\n".join(blocks)


def rows(pairs: Sequence[Pair], instruction: str, k: int, pool: Sequence[Pair], seed: int | None) -> list[Row]:
    """One row per pair with `k` examples from `pool`: random per row (training, `seed` given; never the pair
    itself), or the first k of the pool for every row (evaluation, `seed=None`: one fixed prompt, as a
    published few-shot evaluation uses)."""
    if k and len(pool) < k + 1:
        raise ValueError(f"{k}-shot prompts need at least {k + 1} example pairs, got {len(pool)}")
    rng = random.Random(seed)
    out = []
    for src, tgt in pairs:
        if seed is None:
            shots = [p for p in pool if p[0] != src][:k]
        else:
            shots = []
            while len(shots) < k:
                p = pool[rng.randrange(len(pool))]
                if p[0] != src and p not in shots:
                    shots.append(p)
        out.append(Row(prompt(instruction, shots, src), " " + tgt, source=src))
    return out


def english_text(path: str = "") -> list[str]:
    """The forgetting check's English text, one sentence per item."""
    text = Path(path).read_text(encoding="utf-8") if path else ENGLISH_TEXT
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    if not sentences:
        raise ValueError(f"no English text in {path or 'the built-in paragraph'}")
    return sentences


def perplexity(tm: TextModel, texts: Sequence[str]) -> float:
    """exp(mean negative log-likelihood per token) of `texts` (each after <bos>)."""
    total, count = tm.nll(texts)
    return math.exp(total / max(1, count))


def translate_scores(tm: TextModel, items: list[Row], batch_size: int, decoding: Any) -> tuple[dict[str, float],
                                                                                                list[str]]:
    """BLEU and chrF++ of greedy/beam translations of `items` (and the translations)."""
    hyps = tm.generate(items, tm.options(**decoding.search()), batch_size)
    return translation_scores([r.target.strip() for r in items], hyps), hyps


class TranslationExperiment(Experiment):
    """Telugu→English in a run: the anchor of the recipe, m_A from the run's text_lm stage."""

    group = "text"

    def parts(self) -> Parts:
        return Parts(self.settings.anchor, str(self.run_dir / "text_lm" / "model"), END)

    def adapt_rows(self) -> list[Row]:
        t = self.settings
        pairs = read_pairs(t.data_dir, "train")
        return rows(pairs, t.instruction, t.shots, pairs, seed=self.seed)

    def adapt_metrics(self, tm: TextModel, eval_items: int, batch_size: int) -> dict[str, Any]:
        t = self.settings
        items = rows(read_pairs(t.data_dir, "dev", eval_items), t.instruction, t.shots,
                     read_pairs(t.data_dir, "train", 64), seed=None)
        scores, hyps = translate_scores(tm, items, batch_size, t.decoding)
        return {**scores, "example": f"{items[0].source} → {hyps[0]}"}
