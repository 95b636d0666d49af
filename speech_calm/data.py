"""Manifests to batches: utterances, duration-bucketed batches, prompts and label masking.

Speech manifests are JSONL (one utterance per line, see DESIGN.md "Data"). Batches group utterances of
similar duration (little padding), in an order that depends only on (seed, epoch), so a resumed run sees the
same batches as an uninterrupted one, and each DDP rank takes every world-th batch.

Language-model rows are left-padded (`prompt + target`, targets flush right) so that training and generation
share one layout and the loss needs logits for the last `T_target + 1` positions only (`logits_to_keep`):
with Gemma's 262k vocabulary the LM head would otherwise dominate the step.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from speech_calm.audio import load_audio, resample

IGNORE_INDEX = -100  # label of positions without a loss (cross_entropy's ignore_index)


@dataclass(frozen=True)
class Utterance:
    """One line of a speech manifest, with the audio path made absolute."""

    id: str
    audio: str
    duration: float
    text: str
    language: str
    translation: str | None = None
    speaker: str = ""


T = TypeVar("T")


def read_jsonl(path: str | Path, parse: Callable[[dict], T], what: str, missing: str,
               limit: int | None = None) -> list[T]:
    """`parse(row)` of every non-empty line of a JSONL file, at most `limit` of them (None = all; `parse` may
    return None to skip a row). A missing file raises FileNotFoundError with `missing` (how to make it); a
    malformed line raises ValueError naming `path:line` and `what` the line should have been."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; {missing}")
    out: list[T] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if limit is not None and len(out) >= limit:
                break
            if not line.strip():
                continue
            try:
                item = parse(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise ValueError(f"{path}:{n}: not {what} ({e})") from e
            if item is not None:
                out.append(item)
    return out


def read_manifest(path: str | Path, languages: Sequence[str] | None = None) -> list[Utterance]:
    """Utterances of one JSONL manifest (optionally only `languages`); audio paths resolved next to it."""
    path = Path(path)
    wanted = {lang.lower() for lang in languages} if languages else None

    def parse(row: dict) -> Utterance | None:
        utt = Utterance(
            id=row["id"], audio=str((path.parent / row["audio"]).resolve()), duration=float(row["duration"]),
            text=row["text"], language=row.get("language", ""), translation=row.get("translation"),
            speaker=row.get("speaker", ""),
        )
        return utt if wanted is None or utt.language.lower() in wanted else None

    return read_jsonl(path, parse, "a valid manifest line",
                      f"prepare data first, e.g. python data_prep/vaani.py --source synthetic --out {path.parent}")


def read_split(dirs: Sequence[str | Path], split: str, languages: Sequence[str] | None = None) -> list[Utterance]:
    """The `split` manifests of several data directories, joined (e.g. Telugu plus other languages)."""
    utts = [u for d in dirs for u in read_manifest(Path(d) / f"{split}.jsonl", languages)]
    if not utts:
        raise ValueError(f"no {split} utterances in {list(map(str, dirs))} for languages {languages}")
    return utts


def bucket_batches(
    durations: Sequence[float],
    batch_size: int,
    max_batch_seconds: float | None,
    seed: int,
    epoch: int,
    shuffle: bool = True,
) -> list[list[int]]:
    """Indices grouped into batches of similar duration: at most `batch_size` items and, when given, at most
    `max_batch_seconds` of padded audio (longest item × items). Deterministic for (seed, epoch)."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = sorted(range(len(durations)), key=lambda i: (durations[i], rng.random() if shuffle else i))
    batches, current, longest = [], [], 0.0
    for i in order:
        longer = max(longest, durations[i])
        too_many = len(current) >= batch_size
        too_long = max_batch_seconds is not None and current and longer * (len(current) + 1) > max_batch_seconds
        if current and (too_many or too_long):
            batches.append(current)
            current, longer = [], durations[i]
        current.append(i)
        longest = longer
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


def task_batches(
    tasks: Sequence[str],
    durations: Sequence[float],
    batch_size: int,
    max_batch_seconds: float | None,
    seed: int,
    epoch: int,
    repeats: Mapping[str, int] | None = None,
    by_task: bool = False,
) -> list[list[int]]:
    """`bucket_batches` for rows of several tasks (row k: `tasks[k]`, `durations[k]`).

    repeats: rows of a task per epoch (default 1). A task repeated R times joins R passes over the rows, each
    bucketed apart, so one row's copies fall in different batches. by_task: each task is bucketed alone, so a
    short target (a translation) is never padded to a long one (a transcript). Batches of all passes and
    tasks are shuffled together. With neither, exactly `bucket_batches`. Deterministic for (seed, epoch).
    """
    repeats = repeats or {}
    passes = max([1, *repeats.values()])
    out: list[list[int]] = []
    for r in range(passes):
        pool = [k for k, task in enumerate(tasks) if repeats.get(task, 1) > r]
        names = sorted({tasks[k] for k in pool}) if by_task else [None]
        for name in names:
            rows = [k for k in pool if name is None or tasks[k] == name]
            groups = bucket_batches([durations[k] for k in rows], batch_size, max_batch_seconds,
                                    seed + 7919 * r, epoch)  # each pass its own shuffle
            out += [[rows[j] for j in g] for g in groups]
    if passes > 1 or by_task:
        random.Random(seed * 1_000_003 + epoch).shuffle(out)  # passes and tasks interleaved
    return out


class AudioStore:
    """Reads utterance audio; keeps decoded audio in memory when the corpus is small (< `cache_hours`), so
    epochs after the first do not decode FLAC again."""

    def __init__(self, cache_hours: float = 4.0) -> None:
        self.cache_seconds = cache_hours * 3600
        self._cache: dict[str, np.ndarray] = {}
        self._cached_seconds = 0.0

    def load(self, utt: Utterance) -> np.ndarray:
        wave = self._cache.get(utt.audio)
        if wave is None:
            wave = load_audio(utt.audio)
            if self._cached_seconds + utt.duration <= self.cache_seconds:
                self._cache[utt.audio] = wave
                self._cached_seconds += utt.duration
        return wave

    def batch(self, utts: Sequence[Utterance], speed: Sequence[float] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio of `utts`, right-padded: (B, T) float32 at 16 kHz and lengths (B,). `speed`: optional
        speed-perturbation factors (1.1 = 10% faster and higher), applied by resampling."""
        waves = []
        for i, u in enumerate(utts):
            wave = self.load(u)
            if speed is not None and speed[i] != 1.0:
                wave = resample(wave, round(16000 * speed[i]), 16000)
            waves.append(wave)
        return pad_waves(waves)


def pad_waves(waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D waveforms into (B, T) float32 with lengths (B,)."""
    lens = torch.tensor([len(w) for w in waves])
    audio = torch.zeros(len(waves), int(lens.max()))
    for i, w in enumerate(waves):
        audio[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
    return audio, lens


# --------------------------------------------------------------------------------------------------------
# Language-model rows: prompt + target, left-padded
# --------------------------------------------------------------------------------------------------------


@dataclass
class LMBatch:
    """Left-padded rows for the anchor.

    input_ids, attention_mask: (B, L). labels: (B, K) targets for the logits of the last K positions
    (`logits_to_keep=K`), IGNORE_INDEX where there is no target.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    @property
    def logits_to_keep(self) -> int:
        return self.labels.shape[1]

    def to(self, device: torch.device | str) -> LMBatch:
        return LMBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def lm_batch(prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], pad_id: int) -> LMBatch:
    """Rows `prompt + target`, left-padded; labels cover the target tokens only.

    The logit at position p predicts token p+1, so K = longest target + 1 kept positions cover every target;
    the last kept logit (predicting past the end) has no label.
    """
    rows = [list(p) + list(t) for p, t in zip(prompts, targets)]
    length = max(len(r) for r in rows)
    k = max(len(t) for t in targets) + 1
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), k), IGNORE_INDEX, dtype=torch.long)
    for i, (row, target) in enumerate(zip(rows, targets)):
        ids[i, length - len(row) :] = torch.tensor(row)
        mask[i, length - len(row) :] = 1
        if target:
            labels[i, k - 1 - len(target) : k - 1] = torch.tensor(list(target))
    return LMBatch(ids, mask, labels)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts for generation: (B, L) ids and attention mask, left-padded."""
    length = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), length), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, length - len(p) :] = torch.tensor(list(p))
            mask[i, length - len(p) :] = 1
    return ids, mask


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over target tokens: logits (B, K, V) for the kept positions, labels (B, K)."""
    return torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX
    )


def output_head(anchor: torch.nn.Module) -> tuple[torch.nn.Module, float | None]:
    """The anchor's output projection and its final logit soft-capping (Gemma 2), if any."""
    head = anchor.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(anchor).__name__} has no output embeddings; a causal LM anchor is needed")
    config = getattr(anchor, "config", None)
    config = getattr(config, "get_text_config", lambda: config)()
    return head, getattr(config, "final_logit_softcapping", None)


def target_loss(hidden: torch.Tensor, labels: torch.Tensor, head: torch.nn.Module, softcap: float | None = None,
                vocab: torch.Tensor | None = None, closed: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy computed from the final (normed) hidden states at target tokens only.

    hidden: (B, L, D), the anchor's last entry of `hidden_states`; labels: (B, K) for the last K positions as
    `lm_batch` lays them out. Why not `logits_to_keep=K`: HF slices the last K positions of every row, a
    strided (B, K, D) view that the head multiplies as a batched matmul, padding and all. Gathering the N
    target positions first makes one contiguous (N, D) @ (D, V) product — with Gemma's 262k vocabulary the
    head is most of a training step on a CPU, and this halves it or better.

    vocab: optional sorted (V',) token ids, a closed output vocabulary: the target positions `closed` (B, K)
    bool (all when None) are scored by a softmax over those tokens only, through V' rows of the head instead
    of V (decoding must then allow only them there too: `DecodingOptions.allowed_token_ids`).
    """
    k = labels.shape[1]
    keep = labels != IGNORE_INDEX  # (B, K)
    tail = hidden[:, hidden.shape[1] - k:]
    if vocab is None:
        return _cross_entropy(head(tail[keep]), labels[keep], softcap).sum() / keep.sum()  # (N, D) contiguous
    inside = keep if closed is None else keep & closed.to(keep.device)
    closed, full = inside, keep & ~inside
    total = hidden.new_zeros((), dtype=torch.float32)
    if full.any():
        total = total + _cross_entropy(head(tail[full]), labels[full], softcap).sum()
    if closed.any():
        vocab = vocab.to(labels.device)
        wanted = labels[closed]
        local = torch.searchsorted(vocab, wanted).clamp(max=len(vocab) - 1)
        if (vocab[local] != wanted).any():
            missing = sorted(set(wanted[vocab[local] != wanted].tolist()))[:5]
            raise ValueError(f"target tokens {missing} are outside the closed output vocabulary; every target "
                             "token at a closed position must be in `vocab`")
        bias = None if head.bias is None else head.bias[vocab]
        logits = torch.nn.functional.linear(tail[closed], head.weight[vocab], bias)  # (N', V')
        total = total + _cross_entropy(logits, local, softcap).sum()
    return total / keep.sum()


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, softcap: float | None) -> torch.Tensor:
    """Per-token cross-entropy (N,) of logits (N, V), in fp32, after the anchor's soft-capping if it has one."""
    logits = logits.float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return torch.nn.functional.cross_entropy(logits, labels, reduction="none")


def batch_loss(module: torch.nn.Module, batch: LMBatch, head: tuple[torch.nn.Module, float | None],
               vocab: torch.Tensor | None = None, closed: torch.Tensor | None = None,
               **inputs: Any) -> torch.Tensor:
    """`target_loss` of one forward of `module` (an anchor wrapper, composition, or their DDP wrapper) on `batch`;
    `head` from `output_head`, `vocab`/`closed` a closed output vocabulary (see `target_loss`), `inputs` the
    module's other forward arguments (tower inputs or outputs)."""
    # The anchor's own head runs on the last position only; as an index tensor (not the int 1) that position is
    # gathered contiguously and costs a plain matmul.
    last = torch.tensor([-1], device=batch.input_ids.device)
    out = module(batch.input_ids, batch.attention_mask, logits_to_keep=last, output_hidden_states=True, **inputs)
    return target_loss(out.hidden_states[-1], batch.labels, *head, vocab=vocab, closed=closed)


def chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    """Consecutive slices of at most `size` items."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
