"""The speech composition as a task model: prompts, targets, loss and generation for transcribe / translate.

`SpeechModel` wraps a `Composition` (CALM bridges) or a `PrefixComposition` (the projector baseline) with the
anchor's tokenizer and the recipe's prompts. Training (the compose stage), evaluation and inference all go
through it, so the prompt format is defined once.

    row = <bos> "Transcribe the Telugu speech.\\nTelugu:" " ఈ కుండ ధర ..." <eos>
                 └──────────── prompt (no loss) ────────┘ └──── target (loss) ────┘
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speech_calm.core.batch import lm_batch
from speech_calm.core.bridge import bridge_parameter_count
from speech_calm.core.checkpoint import load_bridges
from speech_calm.core.composition import Composition
from speech_calm.core.decoding import DecodingOptions, generate
from speech_calm.core.loss import batch_loss, output_head
from speech_calm.core.prefix import PrefixComposition, Projector
from speech_calm.core.tower import AugmentingTower, TowerOutput, anchor_spec
from speech_calm.schema import ConfigError
from speech_calm.speech.config import ComposeStageConfig, DecodeConfig
from speech_calm.speech.indic import SCRIPTS, language_script
from speech_calm.speech.offsets import CharacterCount, OffsetPrior
from speech_calm.towers.ctc import CTCCompressedTower
from speech_calm.towers.load import load_anchor, load_speech_tower

TOWER = "speech"  # the speech tower's name inside the composition

TASKS = ("transcribe", "translate")


def compressed(tower: AugmentingTower, cfg: ComposeStageConfig) -> AugmentingTower:
    """m_A as the bridges read it: its frames, or their CTC-compressed runs (`compose.compress: ctc`)."""
    return CTCCompressedTower(tower) if cfg.compress == "ctc" else tower


def offset_prior(cfg: ComposeStageConfig) -> OffsetPrior | None:
    """The bridges' score bias over character offsets (`compose.bridge.offset_bias`), checked against what it
    reads: one memory slot per character or pause, with its index."""
    b = cfg.bridge
    if b.offset_bias is None:
        return None
    if cfg.compress != "ctc" or b.frame_stack != 1:
        raise ConfigError("compose.bridge.offset_bias needs m_A states with character positions, one per slot: set "
                          "compose.compress=ctc and compose.bridge.frame_stack=1, or remove bridge.offset_bias")
    return OffsetPrior(b.offset_bias)


def build_composition(anchor: nn.Module, tower: AugmentingTower, cfg: ComposeStageConfig) -> nn.Module:
    """CALM bridges or, for `bridge.type: prefix`, a projector with as many parameters as those bridges."""
    b = cfg.bridge
    if b.mode != "encoder":
        raise ConfigError(f"a speech tower composes in encoder mode; got compose.bridge.mode={b.mode}")
    if b.type == "cross_attention":
        prior = offset_prior(cfg)
        return Composition(anchor, {TOWER: tower}, b, score_bias={TOWER: prior} if prior else None)
    # the projector gets as many parameters as those bridges would have, their offset prior's included
    hidden = Projector.matched_hidden(bridge_parameters(anchor, tower, cfg), tower.hidden_size,
                                      anchor_spec(anchor).hidden_size, b.frame_stack)
    return PrefixComposition(anchor, {TOWER: tower}, hidden, b.frame_stack)


def bridge_parameters(anchor: nn.Module, tower: AugmentingTower, cfg: ComposeStageConfig) -> int:
    """How many parameters the compose section's cross-attention bridges (their offset prior's included) have
    between this anchor and m_A: what every parameter-matched baseline (projector, LoRA) is given."""
    b = cfg.bridge
    prior = OffsetPrior(b.offset_bias) if b.offset_bias is not None else None
    return bridge_parameter_count(tower, anchor, b, TOWER, prior)


class SpeechModel:
    """A composed speech model with its tokenizer and prompts.

    Args:
        model: a `Composition` or `PrefixComposition` whose speech tower is named "speech".
        tokenizer: the anchor's tokenizer. cfg: the recipe's compose section (prompts, language, decoding).
    """

    def __init__(self, model: nn.Module, tokenizer: Any, cfg: ComposeStageConfig) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.language = cfg.language
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ConfigError("the anchor's tokenizer has no end-of-sequence token; targets need one")
        self.eos_ids = tuple(sorted({eos, *_generation_eos(model)}))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        self._prompts = {task: self._encode_prompt(task) for task in TASKS}
        # the first token of the English marker as it follows a transcript (ends a chained transcript)
        self._marker_start = self._ids(cfg.prompts.english_marker)[0]
        self._head = output_head(model.anchor)
        self._script_vocab = self._closed_vocab() if cfg.script_vocab else None
        self._chars: CharacterCount | None = None
        self._pieces: list[str] | None = None
        if cfg.bridge.type == "cross_attention" and cfg.bridge.offset_bias is not None:
            # characters each token writes (special tokens none); targets start with a space m_A's transcript
            # lacks, so the count starts at -1
            lengths = torch.tensor([len(p) for p in self.pieces()], dtype=torch.float32)
            self._chars = CharacterCount(lengths, start=-1)
            model.context_counter = self._chars

    @property
    def device(self) -> torch.device:
        return next(self.model.bridges.parameters()).device

    @property
    def tower(self) -> AugmentingTower:
        return self.model.towers[TOWER]

    # ---------------------------------------------------------------------------------------- text

    def _encode_prompt(self, task: str) -> list[int]:
        # chained, both tasks read one prompt: a transcript is the part before the English marker
        name = "translate_chained" if self.cfg.chain_translation else task
        text = getattr(self.cfg.prompts, name).format(language=self.language.capitalize())
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def _closed_vocab(self) -> torch.Tensor:
        """Sorted token ids a char-target transcript can hold: each character of the language's script, space
        and the ASCII digits as `target_ids` writes them, and what ends it (<eos>, the English marker's start)."""
        if not self.cfg.char_targets:
            raise ConfigError("compose.script_vocab needs compose.char_targets: true (a transcript written one "
                              "character per token)")
        chars = [chr(c) for lo, hi in SCRIPTS[language_script(self.language)] for c in range(lo, hi + 1)]
        ids = {i for ch in [*chars, " ", *"0123456789"] for i in self._ids(ch)}
        if self.cfg.chain_translation:
            ids.add(self._marker_start)
        return torch.tensor(sorted(ids | set(self.eos_ids)))

    def split_characters(self, texts: Sequence[str]) -> list[str]:
        """The characters of `texts` that the anchor's vocabulary writes as several tokens. With `char_targets`
        a transcript is still written (a character as its pieces), but the offset prior counts the characters
        each token writes, and a piece of a character (a byte) counts as one: the count drifts there."""
        return sorted({ch for text in texts for ch in text if not ch.isspace() and len(self._ids(ch)) > 1})

    def prompt_ids(self, task: str) -> list[int]:
        if task not in self._prompts:
            raise ValueError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
        return self._prompts[task]

    def target_ids(self, text: str, task: str = "translate") -> list[int]:
        """A target's tokens: a leading space (it follows the prompt's colon), then the text and <eos>. With
        `char_targets` a transcript (a transcribe target, or a chained one's part before the English marker)
        is written one character per token."""
        closed, rest = self._target_parts(text, task)
        return closed + rest

    def _target_parts(self, text: str, task: str) -> tuple[list[int], list[int]]:
        """`target_ids` in two parts: the tokens a char-target transcript predicts (its characters and what
        ends it: <eos>, or the English marker's first token), which `script_vocab` scores over the script's
        characters only; then the rest (BPE, scored over the whole vocabulary)."""
        text = " " + text.strip()
        eos = [self.eos_ids[0]]
        if not self.cfg.char_targets or (task == "translate" and not self.cfg.chain_translation):
            return [], self._ids(text) + eos
        marker = self.cfg.prompts.english_marker
        transcript, found, english = text.partition(marker) if task == "translate" else (text, "", "")
        chars = [i for ch in transcript for i in self._ids(ch)]
        if not found:
            return chars + eos, []
        rest = self._ids(found + english)
        return chars + rest[:1], rest[1:] + eos

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def token_ids(self, text: str) -> list[int]:
        """The anchor's tokens of `text` (no special tokens)."""
        return self._ids(text)

    @property
    def transcript_end(self) -> int:
        """The token that ends a chained row's transcript: the English marker's first token."""
        return self._marker_start

    def pieces(self) -> list[str]:
        """The text each anchor token writes alone ("" for special tokens), by token id; decoded once."""
        if self._pieces is None:
            ids = [[i] for i in range(len(self.tokenizer))]
            self._pieces = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return self._pieces

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    def training_target(self, task: str, transcript: str, translation: str | None) -> str:
        """The text a task's target holds: the transcript, the translation, or with `chain_translation` the
        transcript, the English marker and the translation (one row that trains both tasks)."""
        if task == "transcribe":
            return transcript
        if translation is None:
            raise ValueError("a translate target needs a translation")
        if self.cfg.chain_translation:
            return f"{transcript.strip()}{self.cfg.prompts.english_marker} {translation.strip()}"
        return translation

    def training_tasks(self, has_translation: bool) -> list[str]:
        """The rows one utterance gives: one per recipe task with a target; chained, a single row (the
        translate row holds the transcript too; without a translation, the transcript alone)."""
        tasks = [t for t in self.cfg.tasks if t == "transcribe" or has_translation]
        if self.cfg.chain_translation and tasks:
            return ["translate" if "translate" in tasks else "transcribe"]
        return tasks

    def task_caps(self, task: str, caps: list[int]) -> list[int]:
        """Per-item token caps for `task`: 3x for transcripts one character per token, and a chained
        translation's transcript on top of the English."""
        scale = 3 if self.cfg.char_targets else 1
        if task == "translate" and self.cfg.chain_translation:
            return [(scale + 1) * c for c in caps]
        return [scale * c for c in caps] if task == "transcribe" else caps

    def answer(self, task: str, text: str) -> str:
        """What a generated text answers: with `chain_translation`, the transcript before the English marker
        or the translation after it (empty if the marker never came)."""
        if not self.cfg.chain_translation:
            return text
        marker = self.cfg.prompts.english_marker.strip()
        transcript, found, english = text.partition(marker)
        if task == "transcribe":
            return transcript.strip()
        return english.strip() if found else ""

    # ---------------------------------------------------------------------------------------- training

    def loss(self, module: nn.Module, tower_outputs: dict[str, TowerOutput] | None, tasks: Sequence[str],
             targets: Sequence[str], tower_inputs: dict[str, dict] | None = None) -> torch.Tensor:
        """Mean cross-entropy over target tokens. `module` is the composition (or its DDP wrapper); logits are
        computed only at target positions."""
        parts = [self._target_parts(x, t) for x, t in zip(targets, tasks)]
        target_ids = [a + b for a, b in parts]
        batch = lm_batch([self.prompt_ids(t) for t in tasks], target_ids, self.pad_id).to(self.device)
        closed = {}
        if self._script_vocab is not None:  # transcripts over the script's characters only
            k = batch.labels.shape[1]
            where = torch.zeros(batch.labels.shape, dtype=torch.bool)  # lm_batch right-aligns targets at k - 1
            for row, (a, b) in enumerate(parts):
                where[row, k - 1 - len(a) - len(b): k - 1 - len(b)] = True
            closed = {"vocab": self._script_vocab, "closed": where}
        return batch_loss(module, batch, self._head, tower_outputs=tower_outputs, tower_inputs=tower_inputs,
                          **closed, **self.forced_kwargs(target_ids, batch.input_ids.shape[1]))

    def forced_kwargs(self, target_ids: Sequence[Sequence[int]], length: int) -> dict[str, torch.Tensor]:
        """Extra forward arguments for a teacher-forced pass over rows that end with `target_ids`, left-padded
        to `length`: the characters written, when the bridges read m_A by offset (else nothing)."""
        if self._chars is None:
            return {}
        return {"bias_context": self.chars_written(target_ids, length).to(self.device)}

    def chars_written(self, target_ids: Sequence[Sequence[int]], length: int) -> torch.Tensor:
        """(B, length) characters of each target read at every position of its left-padded `lm_batch` row:
        0 over the prompt, then the running count after each target token (less the leading space), as
        `CharacterCount` counts them while decoding."""
        assert self._chars is not None, "the bridges read m_A without an offset prior"
        return self._chars.forced(target_ids, length)

    # ---------------------------------------------------------------------------------------- generation

    def options(self, decoding: DecodeConfig | None = None, task: str = "translate") -> DecodingOptions:
        """Search settings for `task`; a chained transcript also ends where the English marker begins."""
        d = decoding or self.cfg.decoding
        eos = self.eos_ids
        if task == "transcribe" and self.cfg.chain_translation:
            eos = (*eos, self._marker_start)
        allowed, until = None, None
        if self._script_vocab is not None and (task == "transcribe" or self.cfg.chain_translation):
            # a chained translation: characters until the English marker begins, then any token
            allowed = tuple(self._script_vocab.tolist())
            until = self._marker_start if task == "translate" else None
        # m_A's CTC scores judge transcripts: a transcribe search, or a chained row up to its English
        weight = getattr(d, "ctc_weight", 0.0) if task == "transcribe" or self.cfg.chain_translation else 0.0
        return DecodingOptions(
            **d.search(), eos_token_ids=eos, pad_token_id=self.pad_id, allowed_token_ids=allowed, allowed_until=until,
            scorer_weight=weight,
        )

    @torch.no_grad()
    def generate(
        self,
        task: str,
        audio: torch.Tensor | None = None,
        audio_lens: torch.Tensor | None = None,
        tower_outputs: dict[str, TowerOutput] | None = None,
        decoding: DecodeConfig | None = None,
        batch_size: int | None = None,
    ) -> list[str]:
        """Transcripts or translations of a batch: audio (B, T) at 16 kHz with lengths (B,), or precomputed
        tower outputs. Without either the anchor answers the prompt alone (one row per `batch_size`)."""
        seqs, _ = self._generate_ids(task, audio, audio_lens, tower_outputs, decoding, batch_size)
        return [self.answer(task, self.decode(seq)) for seq in seqs]

    @property
    def zero_shot_translation(self) -> bool:
        """Whether translations are zero-shot: a chained model trained on transcripts only
        (`compose.tasks: [transcribe]`) ends its transcript where it learnt to, and a translation is the
        anchor's own continuation after the English marker (`continue_translation`)."""
        return bool(self.cfg.chain_translation) and "translate" not in self.cfg.tasks

    @torch.no_grad()
    def continue_translation(self, seqs: Sequence[Sequence[int]], tower_outputs: dict[str, TowerOutput],
                             caps: Sequence[int], decoding: DecodeConfig | None = None) -> list[list[int]]:
        """Chained outputs `seqs` (token ids after the translate prompt) with an English translation written
        after each one's transcript: the prompt, the transcript, the English marker, then a greedy continuation
        over the whole vocabulary until <eos> or the line ends. `caps`: each item's tokens in all (the
        transcript's count against it, as in one chained search). Returns transcript + marker + English."""
        d = decoding or self.cfg.decoding
        marker = self._ids(self.cfg.prompts.english_marker)
        written = [self.transcript_tokens(seq) + marker for seq in seqs]
        rows = [self.prompt_ids("translate") + w for w in written]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):  # left-padded: every row's next token in the last column
            ids[i, width - len(r):] = torch.tensor(r)
            mask[i, width - len(r):] = 1
        lines = {i for i, p in enumerate(self.pieces()) if p and set(p) <= {"\n"}}  # the English is one line
        options = DecodingOptions(**d.search(), eos_token_ids=tuple(sorted({*self.eos_ids, *lines})),
                                  pad_token_id=self.pad_id)
        left = [max(8, cap - len(w)) for cap, w in zip(caps, written)]
        counter = self.model.context_counter if self._chars is not None else None
        if counter is not None:  # the transcript in the prompt counts as written, as it was in the first search
            self.model.context_counter = self._chars.after(written)
        try:
            english = generate(self.model, ids.to(self.device), mask.to(self.device), None, options,
                               max_new_tokens=left, tower_outputs=tower_outputs)
        finally:
            if counter is not None:
                self.model.context_counter = counter
        return [w + e for w, e in zip(written, english)]

    def shared_search(self, tasks: Sequence[str]) -> bool:
        """Whether one search answers both tasks: chained, a translation starts with the transcript (a greedy
        search writes the same transcript either way, up to the transcript's own token cap)."""
        return bool(self.cfg.chain_translation) and {"transcribe", "translate"} <= set(tasks)

    def transcript_tokens(self, tokens: Sequence[int]) -> list[int]:
        """A chained output's transcript part: its tokens before the English marker's first token."""
        tokens = list(tokens)
        return tokens[: tokens.index(self._marker_start)] if self._marker_start in tokens else tokens

    @torch.no_grad()
    def generate_tasks(self, tasks: Sequence[str], audio: torch.Tensor, audio_lens: torch.Tensor,
                       decoding: DecodeConfig | None = None) -> dict[str, list[str]]:
        """{task: answers} for audio (B, T) with lengths (B,): one search per task, or one for both when
        `shared_search`."""
        if self.shared_search(tasks):
            seqs, caps = self._generate_ids("translate", audio, audio_lens, None, decoding, None)
            caps = self.task_caps("transcribe", caps)
            return {task: [self.answer(task, self.decode(seq)) if task == "translate" else
                           self.decode(self.transcript_tokens(seq)[:cap]) for seq, cap in zip(seqs, caps)]
                    for task in tasks}
        return {task: self.generate(task, audio, audio_lens, decoding=decoding) for task in tasks}

    def _generate_ids(self, task: str, audio: torch.Tensor | None, audio_lens: torch.Tensor | None,
                      tower_outputs: dict[str, TowerOutput] | None, decoding: DecodeConfig | None,
                      batch_size: int | None) -> tuple[list[list[int]], list[int]]:
        """`generate`'s token ids per item, and the items' token caps from their durations (before `task_caps`
        scales them for the task)."""
        d = decoding or self.cfg.decoding
        if audio is not None:
            audio_lens = audio_lens if audio_lens is not None else torch.full((audio.shape[0],), audio.shape[1])
            n = audio.shape[0]
            inputs = {TOWER: {"audio": audio.to(self.device), "audio_lens": audio_lens.to(self.device)}}
            seconds = (audio_lens.float() / 16000).tolist()
        elif tower_outputs is not None:
            n = tower_outputs[TOWER].mask.shape[0]
            inputs = None
            frames = tower_outputs[TOWER].mask.sum(-1).float()
            rate = getattr(self.tower, "frame_rate_hz", None)
            seconds = (frames / rate).tolist() if rate else [math.inf] * n
        else:
            n, inputs, seconds = batch_size or 1, None, [math.inf] * (batch_size or 1)
        caps = token_caps(seconds, d)
        ids = torch.tensor([self.prompt_ids(task)] * n, device=self.device)
        out = generate(self.model, ids, None, inputs, self.options(d, task), max_new_tokens=self.task_caps(task, caps),
                       tower_outputs=tower_outputs)
        return out, caps


def token_caps(seconds: Sequence[float], d: DecodeConfig) -> list[int]:
    """Per-item caps on generated tokens from audio durations in seconds: `max_tokens_per_second` per second
    plus a little slack, so that silence or noise cannot run away into pages of text; unknown (infinite)
    durations get `max_new_tokens`. `generate` also applies `max_new_tokens` as an overall cap."""
    return [max(8, math.ceil(s * d.max_tokens_per_second) + 4) if math.isfinite(s) else d.max_new_tokens
            for s in seconds]


def _generation_eos(model: nn.Module) -> set[int]:
    """End-of-sequence ids in the anchor's generation config (e.g. Gemma's <end_of_turn>)."""
    config = getattr(model.anchor, "generation_config", None)
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        return set()
    return {eos} if isinstance(eos, int) else set(eos)


def load_speech_model(
    cfg: ComposeStageConfig,
    tower_source: str,
    device: torch.device | str = "cpu",
    bridges: str | Path | None = None,
) -> SpeechModel:
    """Build the composed model of a recipe's compose section: anchor + m_A (+ trained bridges)."""
    anchor, tokenizer = load_anchor(cfg.anchor.source, device, cfg.anchor.dtype, cfg.anchor.trust_remote_code)
    tower = load_speech_tower(tower_source, device, cfg.tower.dtype, cfg.tower.trust_remote_code)
    model = build_composition(anchor, compressed(tower, cfg), cfg).to(device)
    if bridges is not None:
        load_bridges(model, bridges)
    return SpeechModel(model, tokenizer, cfg)
