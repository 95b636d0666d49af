"""The Telugu→English text path as recipe stages.

    text_lm        m_A: a new small LM learns Telugu monolingual text (offline there is no small pretrained
                   Telugu LM to further train). It reads the anchor's tokens (aligned mode): trained on the ids
                   the corpus uses, then given the anchor's full vocabulary.
    text_compose   CALM: bridges between frozen m_A and the frozen anchor learn few-shot translation
    text_lora      LoRA in the anchor with as many parameters as the bridges, on the same rows
    text_finetune  the anchor fine-tuned on the same rows (the skyline)
    text_eval      chrF++ and BLEU of m_A, m_B, CALM, LoRA and the fine-tuned anchor on the test pairs, and
                   the anchor's perplexity on English text (forgetting) → text_eval/table.md, table.json
"""

from __future__ import annotations

from typing import Any

from speech_calm.text.experiment import Experiment
from speech_calm.text.rows import Row, TextModel
from speech_calm.text.translation import (
    END,
    TranslationExperiment,
    english_text,
    perplexity,
    read_mono,
    read_pairs,
    rows,
    translate_scores,
)
from speech_calm.towers.load import dequantized_gguf, resolve_source
from speech_calm.towers.small_lm import CompactTokenizer, expand_vocabulary
from speech_calm.training.stages.adapt import TableStage, adaptation_stages
from speech_calm.training.stages.base import Stage
from speech_calm.training.stages.lm import CausalLMStage


def anchor_tokenizer(source: str, trust_remote_code: bool = False) -> tuple[Any, int]:
    """The anchor's tokenizer and vocabulary size, without loading its weights."""
    from transformers import AutoConfig, AutoTokenizer

    where = resolve_source(source)
    if where.endswith(".gguf"):
        where = str(dequantized_gguf(where))
    tok = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code)
    config = AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code)
    return tok, config.get_text_config().vocab_size


class TextLMStage(CausalLMStage):
    """text_lm: m_A learns Telugu text."""

    name = "text_lm"
    config_group = "text"
    config_key = "lm"

    def make_tokenizer(self) -> Any:
        t = self.recipe.text
        texts = read_mono(t.data_dir)
        base, self.vocab_size = anchor_tokenizer(t.anchor.source, t.anchor.trust_remote_code)
        used = {i for x in texts for i in base(x, add_special_tokens=False)["input_ids"]}
        return CompactTokenizer(base, used)

    def train_rows(self) -> list[Row]:
        return [Row("", x) for x in read_mono(self.recipe.text.data_dir)]  # every token is a target

    def dev_metrics(self, tm: TextModel) -> dict[str, float]:
        dev = [s for s, _ in read_pairs(self.recipe.text.data_dir, "dev", self.train_config.eval_items)]
        return {"perplexity": perplexity(tm, dev)}

    def export_model(self) -> Any:
        return expand_vocabulary(self.model, self.tokenizer, self.vocab_size)  # read the anchor's ids: the full table


class TextEvalStage(TableStage):
    """text_eval: the translation table (chrF++, BLEU) with forgetting (English perplexity)."""

    name = "text_eval"
    experiment = TranslationExperiment

    def begin(self, exp: Experiment) -> None:
        self.t = t = exp.settings
        pool = read_pairs(t.data_dir, "dev")
        self.items = rows(read_pairs(t.data_dir, "test", t.test_items), t.instruction, t.shots, pool, seed=None)
        self.english = english_text(t.forgetting_text)
        self.results: dict[str, dict[str, Any]] = {}

    def score(self, label: str, tm: TextModel, info: dict[str, Any]) -> None:
        scores, hyps = translate_scores(tm, self.items, self.t.compose.eval_batch_size, self.t.decoding)
        row: dict[str, Any] = {**scores, "trainable": info.get("trainable"), "examples": hyps[:3]}
        if label != "m_A":
            # the anchor as the composed model holds it, with no m_A input: for CALM the anchor itself
            row["english_ppl"] = perplexity(_anchor_only(tm), self.english)
            if label == "CALM":
                row["english_ppl_with_m_A"] = perplexity(tm, self.english)  # m_A reads the English too
        self.results[label] = row

    def report(self) -> tuple[str, str, dict[str, Any]]:
        return "", translation_table(self.results, self.t.shots, len(self.items)), {"results": self.results}


def _anchor_only(tm: TextModel) -> TextModel:
    """The same model with no m_A input (a composition's anchor is called directly; its bridges stay idle)."""
    from speech_calm.core.baselines import AnchorModel
    from speech_calm.core.composition import Composition

    if isinstance(tm.model, Composition):
        return TextModel(AnchorModel(tm.model.anchor), tm.tokenizer, END)
    return tm


def translation_table(results: dict[str, dict[str, Any]], shots: int, n: int) -> str:
    """The translation table as Markdown."""
    lines = [f"Telugu→English, {n} test sentences, {shots}-shot prompts",
             "",
             "| model | chrF++ | BLEU | English perplexity (anchor, forgetting) | trained parameters |",
             "|---|---|---|---|---|"]
    for label, r in results.items():
        ppl = f"{r['english_ppl']:.2f}" if "english_ppl" in r else "–"
        if "english_ppl_with_m_A" in r:
            ppl += f" ({r['english_ppl_with_m_A']:.2f} with m_A reading)"
        n_params = r.get("trainable")
        count = f"{n_params / 1e6:.2f} M" if n_params else "–"
        lines.append(f"| {label} | {r['chrf']:.1f} | {r['bleu']:.1f} | {ppl} | {count} |")
    return "\n".join(lines)


TranslationComposeStage, TranslationLoraStage, TranslationFinetuneStage = adaptation_stages(
    TranslationExperiment, __name__)

STAGES: dict[str, type[Stage]] = {stage.name: stage for stage in (
    TextLMStage, TranslationComposeStage, TranslationLoraStage, TranslationFinetuneStage, TextEvalStage)}
