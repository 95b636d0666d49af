"""The CALM core: bridges (projection + cross-attention + gate) wired into a frozen anchor LM.

Paper §3.1 (Bansal et al., ICLR 2024), with what encoder-style composition needs on top:

    for each connection (i in L_A, j in L_B):
        m     = proj(stack_k(norm(h_A[i])))                  # (B, S/k, D_B)  m_A states in the anchor's width
        h_B  += tanh(g) * rms(h_B[j]) * xattn(q=norm(n_j(h_B[j])), kv=m, mask)  # after anchor layer j, feeds j+1

The gate g starts at 0, so at step 0 the composed model computes exactly what the anchor computes. The update
is written in units of the anchor's residual stream (rms(h_B[j]), not differentiated), whose scale grows by
orders of magnitude with depth in modern LMs; n_j is the anchor's own norm for layer j's output (the next
layer's input norm), which tames the few massive dimensions that dominate that stream. Bridges
attach to the anchor through forward hooks on its decoder layers: the anchor's modules, parameters and
`state_dict` keys are untouched, and with no m_A input the hooks do nothing (the anchor, bit for bit).

m_A's states and each bridge's keys/values are computed once per input (`Composition.encode` → `Memory`) and
reused by every decoding step. In *aligned* mode (a text m_A reading the anchor's own tokens) m_A keeps its
own KV cache inside the `Memory`, and anchor position t only sees m_A positions <= t (or the last
`bridge.window` of them). With `bridge.null_slot` every query also sees a learned key whose value is zero, so
it can read nothing: how much a bridge writes then depends on the anchor's state, not only on m_A's.

In encoder mode the attention has no positions: to write a transcript the anchor would have to find the slot
of its next character by content alone. With `bridge.offset_bias` (a CTC-compressed speech memory, whose slots
know their character index) every head adds a learned bias over the offset between a slot's character and the
characters the anchor has written so far (`written`: given in training, counted from the tokens while
decoding), started as a monotonic prior and gated per query, so that translation can still search by content.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speech_calm.config import BridgeConfig, ConfigError
from speech_calm.towers import (
    AugmentingTower,
    TowerOutput,
    anchor_spec,
    cache_argument,
    find_layers,
    input_norms,
)


# --------------------------------------------------------------------------------------------------------
# Which layers connect
# --------------------------------------------------------------------------------------------------------


def select_connections(
    tower_layers: int, anchor_layers: int, cfg: BridgeConfig, tower: str = "m_A"
) -> list[tuple[int, int]]:
    """The (m_A layer i, anchor layer j) pairs, 0-based, validated against both depths.

    `cfg.pairs` wins; else `cfg.num` connections evenly spaced in both towers; else every `cfg.every`-th m_A
    layer (k-1, 2k-1, ...) joined to as many anchor layers spread evenly up to the last one (paper: k = 4).
    """
    if cfg.pairs is not None:
        pairs = [tuple(p) for p in cfg.pairs]
        if not pairs:
            raise ConfigError(f"bridge.pairs for tower '{tower}' is empty; give at least one (i, j) pair")
    else:
        if cfg.num is not None:
            n = cfg.num
            if n < 1:
                raise ConfigError(f"bridge.num must be >= 1, got {n}")
        elif cfg.every is not None:
            if cfg.every < 1:
                raise ConfigError(f"bridge.every must be >= 1, got {cfg.every}")
            n = tower_layers // cfg.every
            if n < 1:
                raise ConfigError(
                    f"bridge.every={cfg.every} selects no layer of tower '{tower}', which has {tower_layers} "
                    f"layers; use a smaller bridge.every or bridge.pairs"
                )
        else:
            raise ConfigError("set one of bridge.every, bridge.num or bridge.pairs")
        if n > tower_layers or n > anchor_layers:
            raise ConfigError(
                f"bridge.num={n} is more connections than tower '{tower}' ({tower_layers} layers) or the anchor "
                f"({anchor_layers} layers) has layers"
            )
        if cfg.num is None:
            ii = [(m + 1) * cfg.every - 1 for m in range(n)]  # type: ignore[operator]
        else:
            ii = [round((m + 1) * tower_layers / n) - 1 for m in range(n)]
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


# --------------------------------------------------------------------------------------------------------
# One bridge
# --------------------------------------------------------------------------------------------------------


@dataclass
class BridgeMemory:
    """A bridge's keys and values over m_A's states, computed once per input.

    key, value: (B, H, S, d); mask: (B, S) bool, True on real m_A positions; char_positions: (B, S) long, the
    transcript position of each slot (see `TowerOutput.char_positions`), for `bridge.offset_bias`.
    """

    key: torch.Tensor
    value: torch.Tensor
    mask: torch.Tensor
    char_positions: torch.Tensor | None = None
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
        chars = self.char_positions[index] if self.char_positions is not None else None
        return BridgeMemory(self.key[index], self.value[index], self.mask[index], chars)


class TanhGate(nn.Module):
    """y = tanh(g) * x with a scalar g initialised to 0 (Flamingo): the bridge starts as the identity."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(self.scale)


class Bridge(nn.Module):
    """Projection of m_A layer-i states plus gated multi-head cross-attention from anchor layer j.

    Args:
        tower_dim: D_A, the width of m_A's hidden states.
        anchor_dim: D_B, the anchor's hidden size.
        num_heads: attention heads; D_B must divide by it.
        frame_stack: k consecutive m_A frames are concatenated before projection (shortens speech k times).
        relative: scale the update by the RMS of the anchor state it is added to (see `BridgeConfig.relative`).
        anchor_norm: the anchor's own (frozen) norm for this state, applied before the query's LayerNorm (see
            `BridgeConfig.anchor_norm`); borrowed, not owned: it is not among the bridge's parameters.
    """

    def __init__(
        self,
        tower_dim: int,
        anchor_dim: int,
        num_heads: int,
        frame_stack: int = 1,
        dropout: float = 0.0,
        norm_eps: float = 1e-6,
        relative: bool = True,
        anchor_norm: nn.Module | None = None,
        window: int | None = None,
        null_slot: bool = False,
        offset_bias: int | None = None,
    ) -> None:
        super().__init__()
        if anchor_dim % num_heads:
            raise ConfigError(
                f"bridge.num_heads={num_heads} does not divide the anchor width {anchor_dim}; "
                f"choose a divisor of {anchor_dim}"
            )
        if frame_stack < 1:
            raise ConfigError(f"bridge.frame_stack must be >= 1, got {frame_stack}")
        if window is not None and window < 1:
            raise ConfigError(f"bridge.window must be >= 1 (or null for every earlier position), got {window}")
        if offset_bias is not None and offset_bias < 1:
            raise ConfigError(f"bridge.offset_bias must be >= 1 characters (or null for none), got {offset_bias}")
        self.window = window
        self.num_heads = num_heads
        self.frame_stack = frame_stack
        self.dropout = dropout
        self.relative = relative
        # m_A layers differ in scale; normalising before the projection keeps every connection trainable
        self.norm_memory = nn.LayerNorm(tower_dim * frame_stack, eps=norm_eps)
        self.proj = nn.Linear(tower_dim * frame_stack, anchor_dim)
        self.norm_query = nn.LayerNorm(anchor_dim, eps=norm_eps)
        self.q = nn.Linear(anchor_dim, anchor_dim, bias=False)
        self.k = nn.Linear(anchor_dim, anchor_dim, bias=False)
        self.v = nn.Linear(anchor_dim, anchor_dim, bias=False)
        self.o = nn.Linear(anchor_dim, anchor_dim, bias=False)
        self.gate = TanhGate()
        # logit 0 at the start: the null slot competes with m_A's positions like an average key would
        self.null_key = nn.Parameter(torch.zeros(num_heads, 1, anchor_dim // num_heads)) if null_slot else None
        self.offset_bias: nn.Parameter | None = None
        self.offset_gate: nn.Linear | None = None
        if offset_bias is not None:
            # buckets of half characters (a pause sits between two characters); head h peaks at character
            # offset h-1 (the last character written, the next one, the one after, ...), falling 2 logits per
            # character (1 per character: test CER 5.9% / chrF++ 39.5 against 5.1 / 42.3, recipes/telugu.yaml)
            offsets = torch.arange(-2 * offset_bias, 2 * offset_bias + 1) / 2
            centres = torch.arange(num_heads) % 4 - 1.0
            self.offset_bias = nn.Parameter(-2 * (offsets[None, :] - centres[:, None]).abs())  # (H, 4R+1)
            self.offset_gate = nn.Linear(anchor_dim, num_heads)  # per query and head: how much position counts
            nn.init.zeros_(self.offset_gate.weight)
            nn.init.constant_(self.offset_gate.bias, 2.0)  # sigmoid(2) = 0.88: the prior on from the start
        # a tuple, not a submodule: the anchor's norm keeps its one name and stays out of the bridge's state
        self._anchor_norm = (anchor_norm,) if anchor_norm is not None else ()
        # set by Composition.record_attention: receives the attention probabilities of each call
        self.record: Callable[[torch.Tensor], None] | None = None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape  # (B, S, D) -> (B, H, S, D/H)
        return x.view(b, s, self.num_heads, d // self.num_heads).transpose(1, 2)

    def memory(self, states: torch.Tensor, mask: torch.Tensor,
               char_positions: torch.Tensor | None = None) -> BridgeMemory:
        """Keys and values over m_A states (B, S, D_A) with mask (B, S) → `BridgeMemory` of length S/k.

        char_positions: (B, S), the slots' transcript positions; needed with `offset_bias` (frame_stack 1).
        """
        k = self.frame_stack
        if self.offset_bias is not None and (char_positions is None or k > 1):
            raise ConfigError("bridge.offset_bias needs m_A states with character positions, one per slot: set "
                              "compose.compress=ctc and bridge.frame_stack=1, or remove bridge.offset_bias")
        if k > 1:
            b, s, d = states.shape
            pad = (-s) % k
            states = F.pad(states * mask[..., None], (0, 0, 0, pad))  # padded frames are zero
            mask = F.pad(mask, (0, pad))
            states = states.reshape(b, (s + pad) // k, k * d)  # (B, S/k, k*D_A)
            mask = mask.view(b, (s + pad) // k, k).any(-1)  # a stacked frame is real if any of its frames is
        m = self.proj(self.norm_memory(states))  # (B, S', D_B)
        return BridgeMemory(self._heads(self.k(m)), self._heads(self.v(m)), mask,
                            char_positions if self.offset_bias is not None else None)

    def _offset_scores(self, query: torch.Tensor, memory: BridgeMemory, written: torch.Tensor) -> torch.Tensor:
        """Additive attention scores (B, H, T, S) from the offset of each slot to the characters written.

        query: (B, T, D_B) normed anchor states; written: (B, T) characters of the target read at each position.
        """
        assert self.offset_bias is not None and self.offset_gate is not None and memory.char_positions is not None
        span = self.offset_bias.shape[1] // 2
        offset = memory.char_positions[:, None, :] - (2 * written).round().long()[:, :, None]  # (B, T, S)
        bias = self.offset_bias.t()[offset.clamp(-span, span) + span]  # (B, T, S, H)
        gate = torch.sigmoid(self.offset_gate(query))  # (B, T, H)
        return (bias * gate[:, :, None, :]).permute(0, 3, 1, 2)

    def forward(
        self, hidden: torch.Tensor, memory: BridgeMemory, query_index: torch.Tensor | None = None,
        written: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The gated update to add to anchor states `hidden` (B, T, D_B); returns (B, T, D_B).

        query_index: aligned mode only, (T,) the sequence positions of the T queries; query t then sees only
        m_A positions <= query_index[t] (and > query_index[t] - window with a window). None (encoder mode): every
        query sees all real m_A positions.
        written: with `offset_bias`, (B, T) characters of the target the anchor has read at each position.
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
        if self.offset_bias is not None:
            if written is None:
                raise ValueError("bridge.offset_bias needs the characters written at each query (`written`)")
            scores = self._offset_scores(query, memory, written).to(q.dtype)  # (B, H, T, S)
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
        if self.relative:
            # write in the anchor's own units: its residual stream grows with depth (Gemma 3 270M: RMS ~4 after
            # layer 0, ~1000 after layer 17), so a bridge of fixed scale would vanish in deep layers
            # (one fp32 reduction kernel instead of cast, square, mean and root: this runs at every token)
            rms = torch.linalg.vector_norm(hidden.detach(), dim=-1, keepdim=True, dtype=torch.float32)
            out = out * (rms * hidden.shape[-1] ** -0.5).to(out.dtype)
        return self.gate(out).to(hidden.dtype)


def bridge_parameter_count(tower: AugmentingTower, anchor: nn.Module, cfg: BridgeConfig, name: str) -> int:
    """Parameters the bridges of `cfg` would add between tower `name` and `anchor` (what baselines are
    matched to), counted on one bridge built as `Composition` builds it."""
    spec = anchor_spec(anchor)
    pairs = select_connections(tower.num_layers, spec.num_layers, cfg, name)
    one = Bridge(tower.hidden_size, spec.hidden_size, cfg.num_heads or spec.num_heads, cfg.frame_stack,
                 null_slot=cfg.null_slot, offset_bias=cfg.offset_bias)
    return len(pairs) * sum(p.numel() for p in one.parameters())


# --------------------------------------------------------------------------------------------------------
# The composition
# --------------------------------------------------------------------------------------------------------


@dataclass
class TowerMemory:
    """One tower's bridge memories; in aligned mode also m_A's own KV cache and how far it has read."""

    bridges: list[BridgeMemory]
    cache: Any = None
    length: int = 0


@dataclass
class Memory:
    """Everything the bridges read, per tower name. Built by `Composition.encode`, reused across decoding
    steps; aligned towers extend it in place as tokens are fed (like an HF `Cache`). `written` (B,): with
    `bridge.offset_bias`, the characters of the target read so far (None until the prompt has been read)."""

    towers: dict[str, TowerMemory] = field(default_factory=dict)
    written: torch.Tensor | None = None

    def select(self, index: torch.Tensor) -> None:
        """Reorder / repeat batch rows in place (beam search), m_A caches included."""
        if self.written is not None:
            self.written = self.written[index]
        for tm in self.towers.values():
            tm.bridges = [bm.select(index) for bm in tm.bridges]
            if tm.cache is not None:
                tm.cache.reorder_cache(index)


@dataclass
class _Context:
    memory: Memory
    query_index: dict[str, torch.Tensor | None]
    written: torch.Tensor | None = None


class FrozenTowersModule(nn.Module):
    """Shared plumbing of compositions: frozen anchor and towers, trainable `self.bridges`.

    Subclasses set `self.anchor`, `self.towers` (ModuleDict) and `self.bridges` (ModuleDict) and call
    `freeze_towers()`.
    """

    anchor: nn.Module
    towers: nn.ModuleDict
    bridges: nn.ModuleDict

    def freeze_towers(self) -> None:
        for module in (self.anchor, self.towers):
            module.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True) -> FrozenTowersModule:
        """Bridges follow `mode`; the frozen towers always stay in eval mode (no dropout, fixed statistics)."""
        super().train(mode)
        self.anchor.eval()
        self.towers.eval()
        return self

    def trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of everything that trains: the bridges, named as in `bridge_state_dict`."""
        return self.bridges.named_parameters()

    def bridge_state_dict(self) -> dict[str, torch.Tensor]:
        """The bridges' weights alone (no tower weights), keyed `tower.index.param`."""
        return {k: v.detach() for k, v in self.bridges.state_dict().items()}

    def load_bridge_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load weights saved by `bridge_state_dict`; every bridge key must be present and no other."""
        missing, unexpected = self.bridges.load_state_dict(dict(state), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"bridge checkpoint does not match this composition: missing {missing[:5]}, unexpected "
                f"{unexpected[:5]}; was it saved from a recipe with other towers or bridge settings?"
            )

    def run_towers(
        self,
        tower_inputs: Mapping[str, Mapping[str, Any]] | None,
        tower_outputs: Mapping[str, TowerOutput] | None,
    ) -> dict[str, TowerOutput]:
        """Outputs of the encoder-mode towers: given, or computed here without autograd (they are frozen)."""
        outputs = dict(tower_outputs or {})
        for name, kwargs in (tower_inputs or {}).items():
            if name in outputs:
                raise ValueError(f"tower '{name}' was given both inputs and outputs; give one")
            if name not in self.towers:
                raise KeyError(f"no tower named '{name}' in this composition (towers: {list(self.towers)})")
            with torch.no_grad():
                outputs[name] = self.towers[name](**kwargs)
        for name in outputs:
            if name not in self.towers:
                raise KeyError(f"no tower named '{name}' in this composition (towers: {list(self.towers)})")
        return outputs


class Composition(FrozenTowersModule):
    """A frozen anchor LM augmented by one or more frozen towers through trainable bridges.

    Args:
        anchor: a Hugging Face causal LM (`...ForCausalLM`, `GPT2LMHeadModel`, ...). Frozen here.
        towers: name → augmenting tower (speech encoder, text LM, ...). Frozen here.
        bridges: one `BridgeConfig` for all towers, or one per tower name.

    Only `self.bridges` trains: `trainable_parameters()` names them, `bridge_state_dict()` saves them.
    """

    def __init__(
        self,
        anchor: nn.Module,
        towers: Mapping[str, AugmentingTower],
        bridges: BridgeConfig | Mapping[str, BridgeConfig],
    ) -> None:
        super().__init__()
        if not towers:
            raise ConfigError("a composition needs at least one augmenting tower")
        self.anchor = anchor
        self.towers = nn.ModuleDict(dict(towers))
        spec = anchor_spec(anchor)
        # a tuple, not a submodule: the anchor's layers keep their one name (anchor.model.layers...)
        self.anchor_layers = tuple(find_layers(anchor, spec.num_layers, spec.hidden_size))
        norms = input_norms(anchor, self.anchor_layers)
        self.configs: dict[str, BridgeConfig] = {
            name: bridges if isinstance(bridges, BridgeConfig) else bridges[name] for name in towers
        }
        self.connections: dict[str, list[tuple[int, int]]] = {}
        self.bridges = nn.ModuleDict()
        for name, tower in towers.items():
            cfg = self.configs[name]
            if cfg.type != "cross_attention":
                raise ConfigError(f"Composition builds cross_attention bridges; tower '{name}' asks for {cfg.type}")
            if cfg.mode == "aligned":
                self._check_aligned(name, tower, spec.vocab_size, cfg)
            elif cfg.window is not None:
                raise ConfigError(f"bridge.window needs bridge.mode=aligned (tower '{name}' is in encoder mode, "
                                  f"where m_A positions are not the anchor's); remove bridge.window")
            if cfg.mode == "aligned" and cfg.offset_bias is not None:
                raise ConfigError(f"bridge.offset_bias is for encoder mode over a CTC-compressed speech memory "
                                  f"(tower '{name}' is aligned: use bridge.window); remove bridge.offset_bias")
            pairs = select_connections(tower.num_layers, spec.num_layers, cfg, name)
            self.connections[name] = pairs
            heads = cfg.num_heads or spec.num_heads
            self.bridges[name] = nn.ModuleList(
                Bridge(tower.hidden_size, spec.hidden_size, heads, cfg.frame_stack, cfg.dropout, cfg.norm_eps,
                       cfg.relative, norms[j] if cfg.anchor_norm else None, cfg.window, cfg.null_slot,
                       cfg.offset_bias)
                for _, j in pairs
            )
        self.freeze_towers()
        self.uses_offsets = any(cfg.offset_bias is not None for cfg in self.configs.values())
        # characters per anchor token and the count before the first target token (see `set_token_chars`)
        self.token_chars: torch.Tensor | None = None
        self.chars_start = 0.0
        self._context: _Context | None = None
        self._cache_arg = cache_argument(anchor)
        # anchor layer j -> [(tower, bridge index)]; one hook per anchor layer that has bridges
        self._at_layer: dict[int, list[tuple[str, int]]] = {}
        for name, pairs in self.connections.items():
            for b, (_, j) in enumerate(pairs):
                self._at_layer.setdefault(j, []).append((name, b))
        self._hooks = [
            self.anchor_layers[j].register_forward_hook(self._make_hook(j)) for j in sorted(self._at_layer)
        ]

    @staticmethod
    def _check_aligned(name: str, tower: AugmentingTower, anchor_vocab: int, cfg: BridgeConfig) -> None:
        if tower.modality != "text":
            raise ConfigError(f"tower '{name}' is a {tower.modality} tower; aligned mode needs a text tower")
        tower_vocab = getattr(tower, "vocab_size", None)
        if tower_vocab != anchor_vocab:
            raise ConfigError(
                f"aligned mode needs m_A and the anchor to read the same tokens, but tower '{name}' has a "
                f"vocabulary of {tower_vocab} and the anchor {anchor_vocab}; use bridge.mode=encoder for towers "
                f"with their own tokenizer"
            )
        if cfg.frame_stack != 1:
            raise ConfigError(f"aligned mode reads token by token; set bridge.frame_stack=1 for tower '{name}'")

    # ---------------------------------------------------------------------------------------------- memory

    def encode(
        self,
        tower_inputs: Mapping[str, Mapping[str, Any]] | None = None,
        tower_outputs: Mapping[str, TowerOutput] | None = None,
    ) -> Memory:
        """Run the encoder-mode towers once and project their states for every bridge.

        tower_inputs: tower name → its forward kwargs (speech: `audio` (B, T), `audio_lens` (B,)). Towers left
        out take no part in this input. Aligned towers need no input here: they read the anchor's tokens.
        tower_outputs: tower name → states already computed (a frozen tower's outputs can be cached across
        training epochs); only the layers this composition connects need to be filled in.
        """
        memory = Memory()
        for name, out in self.run_towers(tower_inputs, tower_outputs).items():
            if self.configs[name].mode == "aligned":
                raise ValueError(f"tower '{name}' is aligned: it reads input_ids, give it no inputs or outputs")
            memory.towers[name] = TowerMemory(self._project(name, out))
        for name, cfg in self.configs.items():
            if cfg.mode == "aligned":
                memory.towers[name] = TowerMemory([])
        return memory

    def set_token_chars(self, token_chars: torch.Tensor, start: float = 0.0) -> None:
        """How decoding counts the characters written (`bridge.offset_bias`): `token_chars` (V,) characters
        per anchor token; `start`, the count before the first target token (-1 when targets begin with a
        space that m_A's transcript lacks). Training passes `written` to `forward` instead."""
        self.token_chars = token_chars.float()
        self.chars_start = float(start)

    def _written(self, memory: Memory, input_ids: torch.Tensor | None) -> torch.Tensor:
        """(B, T) characters written at each new position, continuing `memory.written` (decoding). The first
        call on a memory reads the prompt: nothing is written there yet."""
        if input_ids is None:
            raise ValueError("bridge.offset_bias counts characters of input_ids; inputs_embeds alone cannot")
        if self.token_chars is None:
            raise ValueError("bridge.offset_bias: call set_token_chars (or pass `written`) before decoding")
        b, t = input_ids.shape
        if memory.written is None:
            memory.written = torch.full((b,), self.chars_start, device=input_ids.device)
            return torch.zeros(b, t, device=input_ids.device)
        if self.token_chars.device != input_ids.device:  # once, not a (V,) copy at every generated token
            self.token_chars = self.token_chars.to(input_ids.device)
        chars = self.token_chars[input_ids]  # (B, T)
        total = memory.written[:, None] + chars.cumsum(-1)
        memory.written = total[:, -1]
        return total.clamp(min=0)

    def _project(self, name: str, out: TowerOutput) -> list[BridgeMemory]:
        return [
            bridge.memory(out.hidden_states[i], out.mask, out.char_positions)
            for bridge, (i, _) in zip(self.bridges[name], self.connections[name])
        ]

    def _advance_aligned(
        self, memory: Memory, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> dict[str, torch.Tensor | None]:
        """Feed the new tokens to each aligned m_A (with its own cache) and extend the bridge memories."""
        query_index: dict[str, torch.Tensor | None] = {}
        for name, cfg in self.configs.items():
            if cfg.mode != "aligned":
                query_index[name] = None
                continue
            tm = memory.towers.setdefault(name, TowerMemory([]))
            with torch.no_grad():
                out = self.towers[name](
                    input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    cache=tm.cache, use_cache=True,
                )
            new = self._project(name, out)
            tm.bridges = new if not tm.bridges else [old.cat(n) for old, n in zip(tm.bridges, new)]
            tm.cache = out.cache
            t = input_ids.shape[1]
            query_index[name] = torch.arange(tm.length, tm.length + t, device=input_ids.device)
            tm.length += t
        return query_index

    # ---------------------------------------------------------------------------------------------- forward

    def _make_hook(self, j: int):  # noqa: ANN202 - a torch forward hook
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            ctx = self._context
            if ctx is None:
                return output  # no m_A input: the anchor exactly as it was
            hidden = output[0] if isinstance(output, tuple) else output  # (B, T, D_B)
            for name, b in self._at_layer[j]:
                tm = ctx.memory.towers.get(name)
                if tm is None or not tm.bridges:
                    continue
                hidden = hidden + self.bridges[name][b](hidden, tm.bridges[b], ctx.query_index.get(name),
                                                        ctx.written)
            return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

        return hook

    @contextmanager
    def record_attention(self) -> Iterator[dict[str, list[list[torch.Tensor]]]]:
        """Within the block every bridge also stores its cross-attention probabilities (for alignment plots).

        Yields {tower: [one list per bridge, in `connections[tower]` order: probs (B, H, T, S') per call]},
        filled as forwards run; S' counts m_A positions after frame stacking, padded ones get 0. Outside the
        block bridges run SDPA alone: recording costs nothing unless asked for.
        """
        records = {name: [[] for _ in bridges] for name, bridges in self.bridges.items()}
        for name, bridges in self.bridges.items():
            for bridge, calls in zip(bridges, records[name]):
                bridge.record = calls.append
        try:
            yield records
        finally:
            for bridges in self.bridges.values():
                for bridge in bridges:
                    bridge.record = None

    @contextmanager
    def _attached(self, ctx: _Context) -> Iterator[None]:
        self._context = ctx
        try:
            yield
        finally:
            self._context = None

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        tower_inputs: Mapping[str, Mapping[str, Any]] | None = None,
        tower_outputs: Mapping[str, TowerOutput] | None = None,
        memory: Memory | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = False,
        logits_to_keep: int | torch.Tensor = 0,
        output_hidden_states: bool = False,
        written: torch.Tensor | None = None,
    ) -> Any:
        """The anchor's forward with the bridges attached; returns the anchor's output (logits (B, T', V)).

        input_ids / inputs_embeds: (B, T) / (B, T, D_B), the new tokens (all of them, or one decoding step).
        attention_mask: (B, past + T), 1 on real tokens; left padding is fine (positions come from it).
        tower_inputs: forward kwargs per encoder-mode tower, encoded here when `memory` is not given.
        tower_outputs: or their states, already computed (see `encode`).
        memory: from `encode`, reused across decoding steps (and extended in place by aligned towers).
        cache: the anchor's KV cache from the previous step (`towers.output_cache(previous output)`).
        logits_to_keep: as in HF: an int keeps the last N positions (0 = all) — targets only, in training.
        output_hidden_states: as in HF; training uses the last one to compute logits at target tokens only
        (`data.target_loss`).
        written: with `bridge.offset_bias`, (B, T) characters of the target read at each position (training);
        None counts them from the tokens fed (decoding, see `set_token_chars`).
        """
        ref = input_ids if input_ids is not None else inputs_embeds
        if ref is None:
            raise ValueError("give input_ids or inputs_embeds")
        b, t = ref.shape[:2]
        if attention_mask is None:
            past = cache.get_seq_length() if cache is not None else 0
            attention_mask = torch.ones(b, past + t, dtype=torch.long, device=ref.device)
        if position_ids is None:
            # count real tokens only, so left-padded rows start at position 0 like unpadded ones
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -t:]
        if memory is None:
            memory = self.encode(tower_inputs, tower_outputs)
        query_index: dict[str, torch.Tensor | None] = {name: None for name in self.configs}
        if any(cfg.mode == "aligned" for cfg in self.configs.values()):
            if input_ids is None:
                raise ValueError("aligned towers read input_ids; inputs_embeds alone cannot feed them")
            query_index = self._advance_aligned(memory, input_ids, attention_mask, position_ids)
        if self.uses_offsets and written is None:
            written = self._written(memory, input_ids)
        with self._attached(_Context(memory, query_index, written)):
            return self.anchor(
                input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                position_ids=position_ids, use_cache=use_cache, logits_to_keep=logits_to_keep,
                output_hidden_states=output_hidden_states,
                **{self._cache_arg: cache},
            )
