"""One CALM bridge: which layers connect, the projection and gated cross-attention, its memory.

A bridge knows nothing of what m_A or the anchor stand for. What a task knows about positions reaches it
through one hook, a *score bias*: additive attention scores computed from the query, the memory (whose slots
may carry `positions`) and a per-query `bias_context` that the caller supplies (the speech path: a prior over
the offset between a slot's character and the characters already written, `speech_calm.speech.offsets`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from speech_calm.core.optim import GateParameter
from speech_calm.core.tower import AugmentingTower, anchor_spec
from speech_calm.schema import ConfigError


def select_connections(
    tower_layers: int, anchor_layers: int, cfg: BridgeConfig, tower: str = "m_A"
) -> list[tuple[int, int]]:
    """The (m_A layer i, anchor layer j) pairs, 0-based, validated against both depths.

    `cfg.pairs` wins; else every `cfg.every`-th m_A layer (k-1, 2k-1, ...) joined to as many anchor layers
    spread evenly up to the last one (paper: k = 4).
    """
    if cfg.pairs is not None:
        pairs = [tuple(p) for p in cfg.pairs]
        if not pairs:
            raise ConfigError(f"bridge.pairs for tower '{tower}' is empty; give at least one (i, j) pair")
    else:
        if cfg.every is not None:
            if cfg.every < 1:
                raise ConfigError(f"bridge.every must be >= 1, got {cfg.every}")
            n = tower_layers // cfg.every
            if n < 1:
                raise ConfigError(
                    f"bridge.every={cfg.every} selects no layer of tower '{tower}', which has {tower_layers} "
                    f"layers; use a smaller bridge.every or bridge.pairs"
                )
        else:
            raise ConfigError("set bridge.every or bridge.pairs")
        if n > anchor_layers:
            raise ConfigError(
                f"bridge.every={cfg.every} selects {n} layers of tower '{tower}' ({tower_layers} layers), more than "
                f"the anchor's {anchor_layers} layers can take one each; use a larger bridge.every or bridge.pairs"
            )
        ii = [(m + 1) * cfg.every - 1 for m in range(n)]
        jj = [round((m + 1) * anchor_layers / n) - 1 for m in range(n)]
        pairs = list(zip(ii, jj))
    for i, j in pairs:
        if not 0 <= i < tower_layers:
            raise ConfigError(
                f"bridge connection ({i}, {j}) names layer {i} of tower '{tower}', which has {tower_layers} "
                f"layers (valid: 0..{tower_layers - 1})"
            )
        if not 0 <= j < anchor_layers:
            raise ConfigError(
                f"bridge connection ({i}, {j}) names anchor layer {j}, but the anchor has {anchor_layers} "
                f"layers (valid: 0..{anchor_layers - 1})"
            )
    if len(set(pairs)) != len(pairs):
        raise ConfigError(f"bridge connections for tower '{tower}' repeat a pair: {pairs}")
    return pairs  # type: ignore[return-value]


@dataclass
class BridgeMemory:
    """A bridge's keys and values over m_A's states, computed once per input.

    key, value: (B, H, S, d); mask: (B, S) bool, True on real m_A positions; positions: (B, S) long, where each
    slot stands in what m_A read (see `TowerOutput.positions`), kept for a bridge's score bias.
    """

    key: torch.Tensor
    value: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor | None = None
    _encoder_masks: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False, compare=False)
    _with_null: tuple[tuple[int, int], torch.Tensor, torch.Tensor] | None = field(default=None, repr=False,
                                                                                    compare=False)

    def encoder_masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(attn_mask (B, 1, 1, S), visible (B, 1, 1, 1)) for queries that may see every real position.

        Computed once per memory and reused: decoding calls every bridge once per generated token, and these
        small kernels (any, not, or) would otherwise run again each time. `cat`/`select` return new memories.
        """
        if self._encoder_masks is None:
            memory_mask = self.mask[:, None, None, :]
            visible = memory_mask.any(-1, keepdim=True)
            self._encoder_masks = (memory_mask | ~visible, visible)
        return self._encoder_masks

    def with_null(self, null_key: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(key, value), each (B, H, 1+S, d): `null_key` (H, 1, d) and a zero value at position 0, then m_A's.

        Computed once per memory, like `encoder_masks`: in encoder mode decoding reuses one memory at every
        generated token. Made again if `null_key` changed since (another tensor, or updated in place).
        """
        stamp = (id(null_key), null_key._version)
        cached = self._with_null
        if cached is None or cached[0] != stamp or cached[1].dtype != dtype:
            b, h, _, d = self.key.shape
            key = torch.cat([null_key.to(dtype).expand(b, -1, -1, -1), self.key.to(dtype)], dim=2)
            value = torch.cat([self.value.new_zeros(b, h, 1, d, dtype=dtype), self.value.to(dtype)], dim=2)
            self._with_null = cached = (stamp, key, value)
        return cached[1], cached[2]

    def cat(self, other: BridgeMemory) -> BridgeMemory:
        """Append positions (aligned mode, one decoding step)."""
        return BridgeMemory(
            torch.cat([self.key, other.key], dim=2),
            torch.cat([self.value, other.value], dim=2),
            torch.cat([self.mask, other.mask], dim=1),
        )

    def select(self, index: torch.Tensor) -> BridgeMemory:
        """Pick batch rows (beam search reorders and repeats rows)."""
        positions = self.positions[index] if self.positions is not None else None
        return BridgeMemory(self.key[index], self.value[index], self.mask[index], positions)


class TanhGate(nn.Module):
    """y = tanh(g) * x with a scalar g initialised to 0 (Flamingo): the bridge starts as the identity."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = GateParameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(self.scale)


class ScoreBias(Protocol):
    """Additive attention scores a bridge asks its caller for (see the module docstring)."""

    def __call__(self, bridge: Bridge, query: torch.Tensor, memory: BridgeMemory,
                 context: torch.Tensor) -> torch.Tensor:
        """Scores (B, H, T, S) of `bridge`'s queries (B, T, D_B) (normed anchor states) over the memory's S
        slots; `context`: (B, T), what the caller says about each query (`bias_context`). The bridge is passed
        in, not remembered, so a copy of the bridge scores with its own parameters."""


# Called once by each bridge it serves, at the end of the bridge's construction. It may register learned
# parameters on the bridge (they are then saved, loaded and optimised with it, under the names it gives them)
# and returns the bias. A `GateParameter` gets the gates' learning rate.
ScoreBiasFactory = Callable[["Bridge"], ScoreBias]


class Bridge(nn.Module):
    """Projection of m_A layer-i states plus gated multi-head cross-attention from anchor layer j.

    Args:
        tower_dim: D_A, the width of m_A's hidden states.
        anchor_dim: D_B, the anchor's hidden size.
        num_heads: attention heads; D_B must divide by it.
        cfg: frame stacking, dropout, norm epsilon, aligned-mode window and null slot (see `BridgeConfig`).
        anchor_norm: the anchor's own (frozen) norm for this state, applied before the query's LayerNorm (see
            `BridgeConfig.anchor_norm`); borrowed, not owned: it is not among the bridge's parameters.
        score_bias: makes this bridge's `ScoreBias`; its forward then needs `bias_context`, and its memory
            slot positions (one per slot: frame_stack 1).

    Every update is written in the anchor's own units: it is scaled by the RMS of the anchor state it is added
    to, whose residual stream grows with depth (Gemma 3 270M: ~4 after layer 0, ~1000 after layer 17), so
    that a bridge of fixed scale would not vanish in deep layers.
    """

    def __init__(
        self,
        tower_dim: int,
        anchor_dim: int,
        num_heads: int,
        cfg: BridgeConfig | None = None,
        anchor_norm: nn.Module | None = None,
        score_bias: ScoreBiasFactory | None = None,
    ) -> None:
        super().__init__()
        cfg = cfg or BridgeConfig()
        if anchor_dim % num_heads:
            raise ConfigError(
                f"bridge.num_heads={num_heads} does not divide the anchor width {anchor_dim}; "
                f"choose a divisor of {anchor_dim}"
            )
        if cfg.frame_stack < 1:
            raise ConfigError(f"bridge.frame_stack must be >= 1, got {cfg.frame_stack}")
        if cfg.window is not None and cfg.window < 1:
            raise ConfigError(f"bridge.window must be >= 1 (or null for every earlier position), got {cfg.window}")
        self.window = cfg.window
        self.num_heads = num_heads
        self.frame_stack = cfg.frame_stack
        self.dropout = cfg.dropout
        # m_A layers differ in scale; normalising before the projection keeps every connection trainable
        self.norm_memory = nn.LayerNorm(tower_dim * cfg.frame_stack, eps=cfg.norm_eps)
        self.proj = nn.Linear(tower_dim * cfg.frame_stack, anchor_dim)
        self.norm_query = nn.LayerNorm(anchor_dim, eps=cfg.norm_eps)
        self.q = nn.Linear(anchor_dim, anchor_dim, bias=False)
        self.k = nn.Linear(anchor_dim, anchor_dim, bias=False)
        self.v = nn.Linear(anchor_dim, anchor_dim, bias=False)
        self.o = nn.Linear(anchor_dim, anchor_dim, bias=False)
        self.gate = TanhGate()
        # logit 0 at the start: the null slot competes with m_A's positions like an average key would
        self.null_key = (nn.Parameter(torch.zeros(num_heads, 1, anchor_dim // num_heads)) if cfg.null_slot
                         else None)
        # a tuple, not a submodule: what the bias learns it registers on this bridge itself
        self._score_bias: tuple[ScoreBias, ...] = (score_bias(self),) if score_bias is not None else ()
        # a tuple, not a submodule: the anchor's norm keeps its one name and stays out of the bridge's state
        self._anchor_norm = (anchor_norm,) if anchor_norm is not None else ()
        # set by Composition.record_attention: receives the attention probabilities of each call
        self.record: Callable[[torch.Tensor], None] | None = None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape  # (B, S, D) -> (B, H, S, D/H)
        return x.view(b, s, self.num_heads, d // self.num_heads).transpose(1, 2)

    @property
    def has_score_bias(self) -> bool:
        return bool(self._score_bias)

    def memory(self, states: torch.Tensor, mask: torch.Tensor,
               positions: torch.Tensor | None = None) -> BridgeMemory:
        """Keys and values over m_A states (B, S, D_A) with mask (B, S) → `BridgeMemory` of length S/k.

        positions: (B, S), where each state stands in what m_A read; needed by a score bias (frame_stack 1).
        """
        k = self.frame_stack
        if self._score_bias and (positions is None or k > 1):
            raise ConfigError("this bridge's score bias needs m_A states with positions, one per memory slot: "
                              "a tower whose outputs carry `positions`, and bridge.frame_stack=1")
        if k > 1:
            b, s, d = states.shape
            pad = (-s) % k
            states = F.pad(states * mask[..., None], (0, 0, 0, pad))  # padded frames are zero
            mask = F.pad(mask, (0, pad))
            states = states.reshape(b, (s + pad) // k, k * d)  # (B, S/k, k*D_A)
            mask = mask.view(b, (s + pad) // k, k).any(-1)  # a stacked frame is real if any of its frames is
        m = self.proj(self.norm_memory(states))  # (B, S', D_B)
        return BridgeMemory(self._heads(self.k(m)), self._heads(self.v(m)), mask,
                            positions if self._score_bias else None)

    def forward(
        self, hidden: torch.Tensor, memory: BridgeMemory, query_index: torch.Tensor | None = None,
        bias_context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The gated update to add to anchor states `hidden` (B, T, D_B); returns (B, T, D_B).

        query_index: aligned mode only, (T,) the sequence positions of the T queries; query t then sees only
        m_A positions <= query_index[t] (and > query_index[t] - window with a window). None (encoder mode): every
        query sees all real m_A positions.
        bias_context: with a score bias, (B, T) what the caller says about each query (see `ScoreBias`).
        """
        # A query with no visible m_A position (padding, an item without audio) must get exactly 0, not the
        # NaN that softmax over nothing gives: let it attend anywhere, then zero its output.
        if query_index is None:
            attn_mask, visible = memory.encoder_masks()  # (B, 1, 1, S), (B, 1, 1, 1)
        else:
            key_index = torch.arange(memory.mask.shape[1], device=hidden.device)
            causal = key_index[None, :] <= query_index[:, None]  # (T, S)
            if self.window is not None:
                causal = causal & (key_index[None, :] > query_index[:, None] - self.window)
            causal = causal[None, None]  # (1, 1, T, S)
            memory_mask = memory.mask[:, None, None, :] & causal  # (B, 1, T, S)
            visible = memory_mask.any(-1, keepdim=True)  # (B, 1, T, 1)
            attn_mask = memory_mask | ~visible
        query = self._anchor_norm[0](hidden) if self._anchor_norm else hidden
        query = self.norm_query(query)
        q = self._heads(self.q(query))  # (B, H, T, d)
        if self.null_key is None:
            key, value = memory.key.to(q.dtype), memory.value.to(q.dtype)
        else:  # position 0 of keys/values: always visible, reads a zero vector
            key, value = memory.with_null(self.null_key, q.dtype)  # (B, H, 1+S, d)
            attn_mask = torch.cat([attn_mask.new_ones(*attn_mask.shape[:-1], 1), attn_mask & visible], dim=-1)
        if self._score_bias:
            if bias_context is None:
                raise ValueError("this bridge has a score bias: give the context of each query (`bias_context`)")
            scores = self._score_bias[0](self, query, memory, bias_context).to(q.dtype)  # (B, H, T, S)
            if self.null_key is not None:
                scores = F.pad(scores, (1, 0))  # the null slot has no position
            # a float mask is added to the scores; blocked slots get -inf (every row keeps one visible slot)
            attn_mask = scores.masked_fill(~attn_mask, -math.inf)
        out = F.scaled_dot_product_attention(
            q, key, value, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, T, d)
        out = out * visible.to(out.dtype)
        if self.record is not None:  # opt-in: the probabilities SDPA used, computed again explicitly
            scores = q @ key.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, T, [1+]S)
            if attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attn_mask, -math.inf)
            else:
                scores = scores + attn_mask
            probs = scores.softmax(-1) * visible.to(q.dtype)
            # m_A's positions only, (B, H, T, S): what the null slot took is simply not on any of them
            self.record(probs[..., 1:].detach() if self.null_key is not None else probs.detach())
        b, h, t, d = out.shape
        out = self.o(out.transpose(1, 2).reshape(b, t, h * d))  # (B, T, D_B)
        out = F.dropout(out, self.dropout, self.training)
        # in the anchor's units (see the class docstring); one fp32 reduction kernel instead of cast, square,
        # mean and root: this runs at every generated token
        rms = torch.linalg.vector_norm(hidden.detach(), dim=-1, keepdim=True, dtype=torch.float32)
        out = out * (rms * hidden.shape[-1] ** -0.5).to(out.dtype)
        return self.gate(out).to(hidden.dtype)


def bridge_parameter_count(tower: AugmentingTower, anchor: nn.Module, cfg: BridgeConfig, name: str,
                           score_bias: ScoreBiasFactory | None = None) -> int:
    """Parameters the bridges of `cfg` would add between tower `name` and `anchor` (what baselines are
    matched to), counted on one bridge built as `Composition` builds it."""
    spec = anchor_spec(anchor)
    pairs = select_connections(tower.num_layers, spec.num_layers, cfg, name)
    one = Bridge(tower.hidden_size, spec.hidden_size, cfg.num_heads or spec.num_heads, cfg, score_bias=score_bias)
    return len(pairs) * sum(p.numel() for p in one.parameters())


@dataclass
class BridgeConfig:
    """How m_A is joined to the anchor (paper §3.1, plus a pre-norm and a zero-initialised gate)."""

    type: Literal["cross_attention", "prefix"] = "cross_attention"  # CALM bridges, or the projector baseline
    every: int | None = 4  # connect every k-th m_A layer (k-1, 2k-1, ...) to as many evenly spaced anchor layers
    pairs: list[tuple[int, int]] | None = None  # or: explicit (m_A layer, anchor layer) pairs, 0-based
    mode: Literal["encoder", "aligned"] = "encoder"  # aligned: m_A reads the anchor's tokens, causally
    # The bridge's attention has no positions of its own, so over many positions it must find by content the
    # m_A state that belongs to t; window 1 reads exactly m_A's state at t (what m_A believes comes next)
    window: int | None = None  # aligned mode: position t reads m_A positions t-window+1..t (None: all <= t)
    # with window 1 the softmax otherwise has one choice: it could not decide how much to write
    null_slot: bool = False  # a learned key with a zero value beside m_A's positions: a query may read nothing
    num_heads: int | None = None  # cross-attention heads; None = the anchor's head count
    frame_stack: int = 1  # concatenate this many consecutive m_A frames before projecting (speech)
    dropout: float = 0.0  # attention-probability and output dropout inside bridges
    norm_eps: float = 1e-6  # epsilon of the query and memory norms
    # (Gemma's residual stream is dominated by a few massive dimensions: after a plain LayerNorm alone, all
    # positions look alike, cosine ~0.9)
    anchor_norm: bool = True  # queries read the anchor state through the anchor's own norm for the next layer
