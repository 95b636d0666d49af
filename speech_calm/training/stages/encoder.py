"""Stage `encoder`: train m_A with CTC over the characters of every language the recipe lists.

m_A is our Conformer (`encoder.source: conformer`, trained from scratch) or a Hugging Face speech encoder
(`encoder.source: <hub id or dir>`) further trained with a new CTC head. One character vocabulary covers all
scripts (Telugu, Devanagari, Kannada, Tamil), so one multilingual encoder results. Evaluation: dev CER and
WER per language with greedy CTC decoding. Result: `encoder/model/`, loadable as a speech tower on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from speech_calm.core.batch import bucket_batches, chunks
from speech_calm.metrics import cer, wer
from speech_calm.speech.augment import Augmenter
from speech_calm.speech.data import AudioStore, dev_subset, pad_waves, read_split
from speech_calm.speech.indic import language_script
from speech_calm.towers.conformer import ConformerEncoder
from speech_calm.towers.ctc import HFCTCEncoder
from speech_calm.towers.hf import HFSpeechTower
from speech_calm.towers.load import resolve_dtype
from speech_calm.towers.vocab import CharVocab
from speech_calm.training.stages.base import Stage


class _CTCObjective(nn.Module):
    """forward = CTC loss, so that DDP (which hooks forward) wraps the whole encoder."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor, targets: torch.Tensor,
                target_lens: torch.Tensor) -> torch.Tensor:
        return self.encoder.ctc_loss(audio, audio_lens, targets, target_lens)


class EncoderBatch(NamedTuple):
    """Indices into the training set, with their epoch: what makes each utterance's augmentation reproducible."""

    items: list[int]
    epoch: int


class EncoderStage(Stage):
    name = "encoder"
    sections = ("data", "encoder")

    def __init__(self, recipe: Any, runtime: Any, run_dir: Path) -> None:
        super().__init__(recipe, runtime, run_dir)
        self.cfg = recipe.encoder
        self.train_config = self.cfg.train

    def setup(self) -> None:
        data = self.recipe.data
        self.train = read_split(data.dirs, "train", data.languages)
        self.dev = read_split(data.dirs, "dev", data.languages)
        self.vocab = CharVocab.build((u.text for u in self.train), shared=self.cfg.shared_labels,
                                     script=language_script(data.languages[0]))
        if self.cfg.source == "conformer":
            self.encoder: nn.Module = ConformerEncoder(self.cfg.model, self.vocab)
        else:
            from transformers import AutoFeatureExtractor, AutoModel

            dtype = resolve_dtype("float32", self.rt.device)  # trained weights stay fp32; autocast does bf16
            model = AutoModel.from_pretrained(self.cfg.source, dtype=dtype)
            fe = AutoFeatureExtractor.from_pretrained(self.cfg.source)
            self.encoder = HFCTCEncoder(HFSpeechTower(model, fe), self.vocab)
        self.encoder.to(self.rt.device)
        self.module = _CTCObjective(self.encoder)
        self.audio = AudioStore()
        self.augment = Augmenter(self.cfg.augment, self.recipe.seed) if self.cfg.augment.enabled else None
        self.dev_items = dev_subset(self.dev, self.train_config.eval_items)
        if self.rt.is_main:
            hours = sum(u.duration for u in self.train) / 3600
            langs = sorted({u.language for u in self.train})
            n_params = sum(p.numel() for p in self.encoder.parameters())
            print(f"[encoder] {len(self.train)} train utterances ({hours:.2f} h, {', '.join(langs)}), "
                  f"{len(self.vocab)} CTC symbols, {n_params / 1e6:.2f} M parameters", flush=True)

    def trainable(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]

    def buffers(self) -> list[tuple[str, torch.Tensor]]:
        return list(self.module.named_buffers())

    def batches(self, epoch: int) -> list[Any]:
        t = self.train_config
        # SortaGrad: in the first epoch, short utterances (easy alignments) come first
        sorted_first = self.cfg.sortagrad and epoch == 0
        groups = bucket_batches([u.duration for u in self.train], t.batch_size, t.max_batch_seconds,
                                self.recipe.seed, epoch, shuffle=not sorted_first)
        return [EncoderBatch(g, epoch) for g in groups]

    def train_audio(self, batch: EncoderBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch's audio (B, T) and lengths (B,), augmented when `encoder.augment` asks for it."""
        utts = [self.train[i] for i in batch.items]
        if self.augment is None:
            return self.audio.batch(utts)
        # a pure function of (seed, epoch, item): a resumed run sees the same audio
        return pad_waves([self.augment(self.audio.load(u), batch.epoch, i) for u, i in zip(utts, batch.items)])

    def loss(self, model: nn.Module, batch: EncoderBatch) -> torch.Tensor:
        utts = [self.train[i] for i in batch.items]
        audio, lens = self.train_audio(batch)
        targets, target_lens = self.vocab.encode_batch([u.text for u in utts])
        dev = self.rt.device
        return model(audio.to(dev), lens.to(dev), targets.to(dev), target_lens.to(dev))

    def evaluate(self) -> dict[str, float]:
        refs, hyps, langs, losses = [], [], [], []
        for group in chunks(self.dev_items, self.cfg.eval_batch_size):
            audio, lens = self.audio.batch(group)
            audio, lens = audio.to(self.rt.device), lens.to(self.rt.device)
            targets, target_lens = self.vocab.encode_batch([u.text for u in group])
            losses.append(float(self.encoder.ctc_loss(audio, lens, targets, target_lens)))
            hyps.extend(self.encoder.greedy_decode(audio, lens, [language_script(u.language) for u in group]))
            refs.extend(u.text for u in group)
            langs.extend(u.language for u in group)
        out = {"loss": sum(losses) / len(losses), "cer": cer(refs, hyps), "wer": wer(refs, hyps)}
        for lang in sorted(set(langs)):
            r = [x for x, g in zip(refs, langs) if g == lang]
            h = [x for x, g in zip(hyps, langs) if g == lang]
            out[f"cer_{lang}"], out[f"wer_{lang}"] = cer(r, h), wer(r, h)
        return out

    def export(self, stage_dir: Path) -> None:
        self.encoder.eval()
        self.encoder.save_pretrained(stage_dir / "model")
