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

In encoder mode the attention has no positions of its own. A task that knows where each query stands against
m_A's slots gives the bridges a *score bias* (`score_bias` per tower, see `core.bridge.ScoreBias`) and each
query's context: in training as `bias_context` to `forward`, while decoding counted from the tokens fed by
`Composition.context_counter` (a `ContextCounter` the task sets). The speech path's offset prior is such a bias
(`speech_calm.speech.offsets`); the core knows nothing of characters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from speech_calm.core.bridge import (
    Bridge,
    BridgeConfig,
    BridgeMemory,
    ScoreBiasFactory,
    select_connections,
)
from speech_calm.core.tower import (
    AugmentingTower,
    TowerOutput,
    anchor_spec,
    cache_argument,
    find_layers,
    input_norms,
)
from speech_calm.schema import ConfigError


@dataclass
class TowerMemory:
    """One tower's bridge memories; in aligned mode also m_A's own KV cache and how far it has read."""

    bridges: list[BridgeMemory]
    cache: Any = None
    length: int = 0


@dataclass
class Memory:
    """Everything the bridges read, per tower name. Built by `Composition.encode`, reused across decoding
    steps; aligned towers extend it in place as tokens are fed (like an HF `Cache`). `bias_state` (B,): where
    `Composition.context_counter` left off (None until the prompt has been read)."""

    towers: dict[str, TowerMemory] = field(default_factory=dict)
    bias_state: torch.Tensor | None = None

    def select(self, index: torch.Tensor) -> None:
        """Reorder / repeat batch rows in place (beam search), m_A caches included."""
        if self.bias_state is not None:
            self.bias_state = self.bias_state[index]
        for tm in self.towers.values():
            tm.bridges = [bm.select(index) for bm in tm.bridges]
            if tm.cache is not None:
                tm.cache.reorder_cache(index)


@dataclass
class _Context:
    memory: Memory
    query_index: dict[str, torch.Tensor | None]
    bias_context: torch.Tensor | None = None


class ContextCounter(Protocol):
    """Each new query's context for the bridges' score biases while decoding, counted from the tokens fed."""

    def __call__(self, state: torch.Tensor | None, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(context (B, T) of the T new tokens, the state to continue from (B,)); `state` is None when the
        prompt is fed (the first call on a memory)."""


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
        score_bias: tower name → what makes a score bias for each of its bridges (see `core.bridge.ScoreBias`);
            towers left out have none.

    Only `self.bridges` trains: `trainable_parameters()` names them, `bridge_state_dict()` saves them.
    """

    def __init__(
        self,
        anchor: nn.Module,
        towers: Mapping[str, AugmentingTower],
        bridges: BridgeConfig | Mapping[str, BridgeConfig],
        score_bias: Mapping[str, ScoreBiasFactory] | None = None,
    ) -> None:
        super().__init__()
        if not towers:
            raise ConfigError("a composition needs at least one augmenting tower")
        for name, tower in towers.items():
            if not isinstance(tower, AugmentingTower):
                raise ConfigError(
                    f"tower '{name}' is a {type(tower).__name__}, not an AugmentingTower: wrap a Hugging Face model "
                    f"first (speech_calm.towers.hf.HFSpeechTower(model, feature_extractor) for a speech encoder, "
                    f"HFTextTower(model) for a causal LM), or load it with speech_calm.towers.load")
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
            pairs = select_connections(tower.num_layers, spec.num_layers, cfg, name)
            self.connections[name] = pairs
            heads = cfg.num_heads or spec.num_heads
            self.bridges[name] = nn.ModuleList(
                Bridge(tower.hidden_size, spec.hidden_size, heads, cfg, norms[j] if cfg.anchor_norm else None,
                       (score_bias or {}).get(name))
                for _, j in pairs
            )
        self.freeze_towers()
        self.uses_score_bias = any(b.has_score_bias for bridges in self.bridges.values() for b in bridges)
        # set by the task when its bridges have a score bias: counts `bias_context` from the tokens fed (decoding)
        self.context_counter: ContextCounter | None = None
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

    def _project(self, name: str, out: TowerOutput) -> list[BridgeMemory]:
        return [
            bridge.memory(out.hidden_states[i], out.mask, out.positions)
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
                                                        ctx.bias_context)
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
        bias_context: torch.Tensor | None = None,
    ) -> Any:
        """The anchor's forward with the bridges attached; returns the anchor's output (logits (B, T', V)).

        input_ids / inputs_embeds: (B, T) / (B, T, D_B), the new tokens (all of them, or one decoding step).
        attention_mask: (B, past + T), 1 on real tokens; left padding is fine (positions come from it).
        tower_inputs: forward kwargs per encoder-mode tower, encoded here when `memory` is not given.
        tower_outputs: or their states, already computed (see `encode`).
        memory: from `encode`, reused across decoding steps (and extended in place by aligned towers).
        cache: the anchor's KV cache from the previous step (`core.tower.output_cache(previous output)`).
        logits_to_keep: as in HF: an int keeps the last N positions (0 = all) — targets only, in training.
        output_hidden_states: as in HF; training uses the last one to compute logits at target tokens only
        (`core.loss.target_loss`).
        bias_context: with score biases, (B, T) each query's context (training, teacher forcing); None counts
        it from the tokens fed with `self.context_counter` (decoding).
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
        if self.uses_score_bias and bias_context is None:
            if self.context_counter is None or input_ids is None:
                raise ValueError("these bridges have a score bias: pass bias_context, or set "
                                 "Composition.context_counter and feed input_ids")
            bias_context, memory.bias_state = self.context_counter(memory.bias_state, input_ids)
        with self._attached(_Context(memory, query_index, bias_context)):
            return self.anchor(
                input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                position_ids=position_ids, use_cache=use_cache, logits_to_keep=logits_to_keep,
                output_hidden_states=output_hidden_states,
                **{self._cache_arg: cache},
            )
