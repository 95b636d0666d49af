"""Text in, text out: prompt/target rows, their loss, generation and perplexity for any text-path model.

A `TextModel` pairs a model with the composition interface (`Composition` with a text m_A, in aligned or
encoder mode, or an `AnchorModel`: the anchor alone, LoRA-adapted, fine-tuned, or a small LM on its own) with
its tokenizer, so the key-value experiment and the translation path train and score every row of their tables
through one code path.

    row    = <bos> prompt            target <end>
             └── no loss (unless loss_on_prompt) ─┘└─ loss ─┘

Aligned mode: m_A reads the very tokens the anchor reads (prompt, target and, when generating, every new
token), so nothing else is passed. Encoder mode: m_A reads `Row.source` (e.g. the Telugu sentence) in its
own tokenizer, once per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from speech_calm.core.batch import IGNORE_INDEX, LMBatch, chunks, lm_batch
from speech_calm.core.composition import Composition
from speech_calm.core.decoding import DecodingOptions, generate
from speech_calm.core.loss import batch_loss, output_head

TOWER = "m_a"  # the text tower's name inside a composition


@dataclass(frozen=True)
class Row:
    """One example. prompt: what the model reads; target: what it must write; source: what an encoder-mode
    m_A reads (unused in aligned mode and by models without m_A)."""

    prompt: str
    target: str
    source: str = ""


def full_lm_batch(prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], pad_id: int) -> LMBatch:
    """Rows `prompt + target`, left-padded, with a label on every next token (a language model's loss);
    labels (B, L) go with logits for all L positions."""
    rows = [list(p) + list(t) for p, t in zip(prompts, targets)]
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    for i, row in enumerate(rows):
        start = length - len(row)
        ids[i, start:] = torch.tensor(row)
        mask[i, start:] = 1
        labels[i, start : length - 1] = torch.tensor(row[1:])  # the logit at p predicts token p+1
    return LMBatch(ids, mask, labels)


def stop_token_ids(tokenizer: Any, end: str) -> tuple[int, int]:
    """(the id appended to targets, …) for `end`: "eos" (the tokenizer's end-of-sequence token) or a text such
    as "\\n" that must encode to one token. Returns (end_id, eos_id)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no end-of-sequence token; targets need one")
    if end == "eos":
        return eos, eos
    ids = tokenizer(end, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"the end text {end!r} is {len(ids)} tokens for this tokenizer; it must be one")
    return ids[0], eos


class TextModel:
    """A model with the composition interface plus its tokenizer(s).

    Args:
        model: a `Composition` (one text tower named "m_a") or an `AnchorModel`.
        tokenizer: the anchor's tokenizer (prompts and targets).
        end: what ends a target — "eos", or a one-token text such as "\\n" (few-shot prompts: an answer ends
            at the line break, as in the examples). Generation stops at it, at <eos>, and at any token made only
            of line breaks when `end` is one.
        tower_tokenizer: m_A's own tokenizer, for a composition in encoder mode.
    """

    def __init__(self, model: nn.Module, tokenizer: Any, end: str = "eos", tower_tokenizer: Any = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.end_id, eos = stop_token_ids(tokenizer, end)
        stops = {self.end_id, eos}
        if end.strip("\n") == "" and end:  # "\n\n" etc. are separate tokens in most vocabularies
            stops |= {i for t, i in tokenizer.get_vocab().items() if t and set(t) <= {"\n"}}
        self.stop_ids = tuple(sorted(stops))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        self.tower_tokenizer = tower_tokenizer
        self.encoder_mode = isinstance(model, Composition) and model.configs[TOWER].mode == "encoder"
        if self.encoder_mode and tower_tokenizer is None:
            raise ValueError("a composition in encoder mode needs m_A's tokenizer (tower_tokenizer)")
        self._cache: dict[str, list[int]] = {}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------------------------------ tokens

    def prompt_ids(self, text: str) -> list[int]:
        """<bos> + the prompt's tokens (memoised: few-shot prompts repeat)."""
        if text not in self._cache:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[text] = list(self.tokenizer(text, add_special_tokens=True)["input_ids"])
        return self._cache[text]

    def target_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + [self.end_id]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    def tower_inputs(self, rows: Sequence[Row]) -> dict[str, dict[str, torch.Tensor]] | None:
        """Encoder mode: m_A's input_ids and attention_mask (B, S) over the rows' sources; else None."""
        if not self.encoder_mode:
            return None
        enc = self.tower_tokenizer([r.source for r in rows], padding=True, return_tensors="pt")
        return {TOWER: {"input_ids": enc["input_ids"].to(self.device),
                        "attention_mask": enc["attention_mask"].to(self.device)}}

    # ------------------------------------------------------------------------------------------ training

    def batch(self, rows: Sequence[Row], loss_on_prompt: bool = False) -> LMBatch:
        prompts = [self.prompt_ids(r.prompt) for r in rows]
        targets = [self.target_ids(r.target) for r in rows]
        make = full_lm_batch if loss_on_prompt else lm_batch
        return make(prompts, targets, self.pad_id).to(self.device)

    def loss(self, module: nn.Module, rows: Sequence[Row], loss_on_prompt: bool = False) -> torch.Tensor:
        """Mean cross-entropy over target tokens (every token with `loss_on_prompt`); `module` is the model or
        its DDP wrapper. Logits are computed for the target positions only (262k-token vocabularies)."""
        batch = self.batch(rows, loss_on_prompt)
        return batch_loss(module, batch, output_head(self.model.anchor), tower_inputs=self.tower_inputs(rows))

    @torch.no_grad()
    def nll(self, texts: Sequence[str], batch_size: int = 8) -> tuple[float, int]:
        """Summed negative log-likelihood (nats) of every token of `texts` after <bos>, and the token count."""
        total, count = 0.0, 0
        for group in chunks(list(texts), batch_size):
            rows = [Row("", t) for t in group]
            batch = full_lm_batch([self.prompt_ids("")] * len(rows),
                                  [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in group],
                                  self.pad_id).to(self.device)
            out = self.model(batch.input_ids, batch.attention_mask, tower_inputs=self.tower_inputs(rows))
            logp = out.logits.float().log_softmax(-1)
            real = batch.labels != IGNORE_INDEX
            picked = logp.gather(-1, batch.labels.clamp(min=0)[..., None])[..., 0]
            total -= float(picked[real].sum())
            count += int(real.sum())
        return total, count

    # ------------------------------------------------------------------------------------------ generation

    def options(self, max_new_tokens: int, beam_size: int = 1, **kw: Any) -> DecodingOptions:
        return DecodingOptions(max_new_tokens=max_new_tokens, beam_size=beam_size, eos_token_ids=self.stop_ids,
                               pad_token_id=self.pad_id, **kw)

    @torch.no_grad()
    def generate(self, rows: Sequence[Row], options: DecodingOptions, batch_size: int = 64) -> list[str]:
        """The model's answer to each row's prompt (its target is not read), decoded and stripped."""
        out: list[str] = []
        for group in chunks(list(rows), batch_size):
            prompts = [self.prompt_ids(r.prompt) for r in group]
            width = max(len(p) for p in prompts)
            ids = torch.full((len(group), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, p in enumerate(prompts):
                ids[i, width - len(p) :] = torch.tensor(p)
                mask[i, width - len(p) :] = 1
            seqs = generate(self.model, ids.to(self.device), mask.to(self.device), self.tower_inputs(group), options)
            out.extend(self.decode(s) for s in seqs)
        return out
