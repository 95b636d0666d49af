"""CTC prefix scores of an anchor's hypotheses (hybrid CTC/attention decoding, Watanabe et al. 2017, Alg. 2).

m_A's CTC posteriors say how likely every transcript is; the prefix score psi(h) = P(h is the start of the
transcript) can be extended one label at a time. `CTCPrefixScorer` is a `core.decoding.PrefixScorer`: for each
candidate anchor token it gives log psi(h + token) - log psi(h), and for an end token (<eos>, or the marker
that ends a chained transcript) log P(h is the whole transcript) - log psi(h). After an end token it scores
nothing (a chained output's English is not m_A's to judge).

The recursion over frames, r_t^n(h+c) = (r_{t-1}^n(h+c) + phi_{t-1}) p_t(c) and r_t^b(h+c) = (r_{t-1}^b(h+c) +
r_{t-1}^n(h+c)) p_t(blank), is linear, so it is computed without a loop over frames: in log space each is a
cumulative log-sum-exp of phi against cumulative log-probabilities (float64, so the differences of long sums
keep their precision). Frames past an item's length have p(blank) = 1 and p(label) ~ 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

__all__ = ["CTCPrefixScorer", "PrefixState"]

_FLOOR = -1.0e4  # log-probability of a label on a frame past the item's end (exp underflows to 0, no NaN)
_NONE, _LABELS, _END = 0, 1, 2  # what a token is to the scorer: unscorable, a label sequence, the end


@dataclass
class PrefixState:
    """Per search row: its item, log r^n and log r^b (N, T+1) over frames 0..T, the last label (-1: none yet),
    log psi of the prefix, and whether an end token has been written."""

    rows: torch.Tensor
    rn: torch.Tensor
    rb: torch.Tensor
    last: torch.Tensor
    psi: torch.Tensor
    ended: torch.Tensor


class CTCPrefixScorer:
    """Prefix scores of anchor tokens under CTC log-posteriors.

    Args:
        log_probs: (B, T, L) m_A's CTC log-posteriors. lengths: (B,) real frames per item.
        token_labels: anchor token id -> the CTC labels it writes (a space label before any other label is
            dropped: transcripts start with the space the prompt's colon needs). Tokens left out cannot be
            written by m_A and score -inf.
        end_ids: anchor tokens that end the transcript.
        space: the CTC label of a space (None if m_A has none). blank: the CTC blank label.
    """

    def __init__(self, log_probs: torch.Tensor, lengths: torch.Tensor, token_labels: Mapping[int, Sequence[int]],
                 end_ids: Sequence[int], space: int | None = None, blank: int = 0) -> None:
        b, t, _ = log_probs.shape
        device = log_probs.device
        lp = log_probs.double().clamp(min=_FLOOR)
        past = torch.arange(t, device=device)[None, :] >= lengths.to(device)[:, None]  # (B, T)
        lp = lp.masked_fill(past[..., None], _FLOOR)
        lp[..., blank] = lp[..., blank].masked_fill(past, 0.0)
        self.lp = lp  # (B, T, L)
        self.lengths = lengths.to(device).long()
        self.blank, self.space = blank, space
        vocab = 1 + max([*token_labels, *end_ids, 0])
        width = max([1, *(len(v) for v in token_labels.values())])
        self.kind = torch.zeros(vocab, dtype=torch.long, device=device)
        self.labels = torch.full((vocab, width), -1, dtype=torch.long, device=device)
        for token, labels in token_labels.items():
            self.kind[token] = _LABELS
            if labels:
                self.labels[token, : len(labels)] = torch.tensor(list(labels))
        self.kind[list(end_ids)] = _END
        zero = torch.zeros(b, 1, dtype=lp.dtype, device=device)
        self._blank_prefix = torch.cat([zero, lp[..., blank].cumsum(-1)], 1)  # log r^b of the empty prefix

    # --------------------------------------------------------------------------------------------- protocol

    def start(self) -> PrefixState:
        b = self.lp.shape[0]
        device = self.lp.device
        return PrefixState(
            rows=torch.arange(b, device=device),
            rn=torch.full_like(self._blank_prefix, -float("inf")),
            rb=self._blank_prefix.clone(),
            last=torch.full((b,), -1, dtype=torch.long, device=device),
            psi=torch.zeros(b, dtype=self.lp.dtype, device=device),
            ended=torch.zeros(b, dtype=torch.bool, device=device),
        )

    def select(self, state: PrefixState, index: torch.Tensor) -> PrefixState:
        return PrefixState(*(getattr(state, f)[index] for f in ("rows", "rn", "rb", "last", "psi", "ended")))

    def score(self, state: PrefixState, tokens: torch.Tensor) -> torch.Tensor:
        n, k = tokens.shape
        flat = self.select(state, torch.arange(n, device=tokens.device).repeat_interleave(k))
        new = self._append(flat, tokens.reshape(-1))
        delta = (new.psi - flat.psi).view(n, k)
        return torch.where(state.ended[:, None], torch.zeros_like(delta), delta).float()

    def advance(self, state: PrefixState, tokens: torch.Tensor, active: torch.Tensor | None = None) -> PrefixState:
        new = self._append(state, tokens)
        new.ended = new.ended | state.ended | (self._kind(tokens) != _LABELS)  # an unscorable token ends it too
        if active is None:
            return new
        keep = ~active.to(tokens.device)
        return PrefixState(*(torch.where(keep.view(-1, *[1] * (getattr(state, f).dim() - 1)), getattr(state, f),
                                         getattr(new, f)) for f in ("rows", "rn", "rb", "last", "psi", "ended")))

    # --------------------------------------------------------------------------------------------- recursion

    def _kind(self, tokens: torch.Tensor) -> torch.Tensor:
        inside = tokens < self.kind.shape[0]
        return torch.where(inside, self.kind[tokens.clamp(max=self.kind.shape[0] - 1)], _NONE)

    def _append(self, state: PrefixState, tokens: torch.Tensor) -> PrefixState:
        """Every row's state after its token (N,): psi is the new prefix score (the whole-transcript score
        for an end token, -inf for a token m_A cannot write); finished rows are left as they are."""
        kind = self._kind(tokens)
        labels = self.labels[tokens.clamp(max=self.labels.shape[0] - 1)]  # (N, W)
        rn, rb, last, psi = state.rn, state.rb, state.last, state.psi
        for j in range(labels.shape[1]):
            c = labels[:, j]
            step = (kind == _LABELS) & (c >= 0)
            if self.space is not None:
                step &= ~((c == self.space) & (last < 0))  # the leading space writes no label
            if not step.any():
                continue
            n_rn, n_rb, n_psi = self._extend(state.rows, rn, rb, last, c.clamp(min=0))
            rn = torch.where(step[:, None], n_rn, rn)
            rb = torch.where(step[:, None], n_rb, rb)
            psi = torch.where(step, n_psi, psi)
            last = torch.where(step, c, last)
        frames = self.lengths[state.rows]
        whole = torch.logaddexp(state.rn.gather(1, frames[:, None]), state.rb.gather(1, frames[:, None]))[:, 0]
        psi = torch.where(kind == _END, whole, psi)
        psi = torch.where(kind == _NONE, torch.full_like(psi, -float("inf")), psi)
        psi = torch.where(state.ended, state.psi, psi)
        return PrefixState(state.rows, rn, rb, last, psi, state.ended | (kind == _END))

    def _extend(self, rows: torch.Tensor, rn: torch.Tensor, rb: torch.Tensor, last: torch.Tensor,
                c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """log r^n, log r^b (N, T+1) and log psi (N,) of each row's prefix extended by label c (N,)."""
        lp = self.lp[rows]  # (N, T, L)
        lc = lp.gather(2, c[:, None, None].expand(-1, lp.shape[1], 1))[..., 0]  # (N, T)
        lb = lp[..., self.blank]
        # phi_{t-1}: paths that can be followed by a new c at frame t (a repeated label needs a blank between)
        phi = torch.logaddexp(rb[:, :-1], torch.where((last == c)[:, None], -float("inf"), rn[:, :-1]))
        cum_c = torch.cat([torch.zeros_like(lc[:, :1]), lc.cumsum(-1)], 1)  # (N, T+1)
        new_rn = cum_c[:, 1:] + torch.logcumsumexp(phi - cum_c[:, :-1], -1)
        new_rn = torch.cat([torch.full_like(new_rn[:, :1], -float("inf")), new_rn], 1)
        cum_b = torch.cat([torch.zeros_like(lb[:, :1]), lb.cumsum(-1)], 1)
        new_rb = cum_b[:, 1:] + torch.logcumsumexp(new_rn[:, :-1] - cum_b[:, :-1], -1)
        new_rb = torch.cat([torch.full_like(new_rb[:, :1], -float("inf")), new_rb], 1)
        psi = torch.logsumexp(phi + lc, -1)
        return new_rn, new_rb, psi
