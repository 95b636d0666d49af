"""The projector baseline (SLAM-ASR, Ultravox, Shuka): m_A states projected into the anchor's input embeddings.

    row = [emb(<bos>), proj(stack_k(m_A layer i)) for each real frame, emb(prompt tokens...), emb(target...)]

Same interface as `Composition` (encode / forward / trainable_parameters / bridge_state_dict), so training,
decoding and checkpoints treat both alike. By default the projector's hidden width is chosen so that it has
as many parameters as the CALM bridges it is compared with (`matched_hidden`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speech_calm.core.composition import FrozenTowersModule
from speech_calm.core.tower import (
    AugmentingTower,
    TowerOutput,
    anchor_spec,
    cache_argument,
)
from speech_calm.schema import ConfigError


class Projector(nn.Module):
    """LayerNorm → Linear(k·D_A → H) → GELU → Linear(H → D_B): m_A frames to anchor input embeddings."""

    def __init__(self, tower_dim: int, anchor_dim: int, hidden: int, frame_stack: int = 1) -> None:
        super().__init__()
        self.frame_stack = frame_stack
        self.norm = nn.LayerNorm(tower_dim * frame_stack)
        self.up = nn.Linear(tower_dim * frame_stack, hidden)
        self.down = nn.Linear(hidden, anchor_dim)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """states (B, S, D_A), mask (B, S) → embeddings (B, S/k, D_B), mask (B, S/k)."""
        k = self.frame_stack
        if k > 1:
            b, s, d = states.shape
            pad = (-s) % k
            states = F.pad(states * mask[..., None], (0, 0, 0, pad)).reshape(b, (s + pad) // k, k * d)
            mask = F.pad(mask, (0, pad)).view(b, (s + pad) // k, k).any(-1)
        return self.down(F.gelu(self.up(self.norm(states)))), mask

    @staticmethod
    def matched_hidden(params: int, tower_dim: int, anchor_dim: int, frame_stack: int) -> int:
        """The hidden width H that gives a projector of about `params` parameters."""
        d_in = tower_dim * frame_stack
        return max(1, round((params - 2 * d_in - anchor_dim) / (d_in + 1 + anchor_dim)))


@dataclass
class PrefixMemory:
    """Projected audio (B, S, D_B) with its mask (B, S); after the first forward also the combined mask of
    [audio + prompt] rows and the prompt width, so decoding steps can extend it."""

    embeds: torch.Tensor
    mask: torch.Tensor
    prefix_mask: torch.Tensor | None = None
    prompt_width: int = 0

    def select(self, index: torch.Tensor) -> None:
        self.embeds, self.mask = self.embeds[index], self.mask[index]
        if self.prefix_mask is not None:
            self.prefix_mask = self.prefix_mask[index]


class PrefixComposition(FrozenTowersModule):
    """A frozen anchor reading projected m_A states as a prefix of its input (one speech tower).

    Args:
        anchor: an HF causal LM. tower: the frozen speech tower. tower_layer: which of its layers to read
        (default the last). hidden: the projector's hidden width. frame_stack: frames concatenated per step.
    """

    def __init__(
        self,
        anchor: nn.Module,
        towers: Mapping[str, AugmentingTower],
        hidden: int,
        frame_stack: int = 1,
        tower_layer: int = -1,
    ) -> None:
        super().__init__()
        if len(towers) != 1:
            raise ConfigError(f"the prefix baseline reads one tower, got {list(towers)}")
        self.anchor = anchor
        self.towers = nn.ModuleDict(dict(towers))
        self.name, tower = next(iter(towers.items()))
        if not -tower.num_layers <= tower_layer < tower.num_layers:
            raise ConfigError(f"tower layer {tower_layer} is outside the tower's {tower.num_layers} layers")
        self.tower_layer = tower_layer % tower.num_layers
        spec = anchor_spec(anchor)
        self.bridges = nn.ModuleDict({self.name: Projector(tower.hidden_size, spec.hidden_size, hidden, frame_stack)})
        self.freeze_towers()
        self._cache_arg = cache_argument(anchor)
        self.embed = anchor.get_input_embeddings()

    def encode(
        self,
        tower_inputs: Mapping[str, Mapping[str, Any]] | None = None,
        tower_outputs: Mapping[str, TowerOutput] | None = None,
    ) -> PrefixMemory | None:
        """Project the tower's states once per input; None when no audio is given (the anchor alone)."""
        outputs = self.run_towers(tower_inputs, tower_outputs)
        if self.name not in outputs:
            return None
        out = outputs[self.name]
        embeds, mask = self.bridges[self.name](out.hidden_states[self.tower_layer], out.mask)
        return PrefixMemory(embeds, mask)

    def _splice(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, memory: PrefixMemory
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows [first real token, real audio frames, other real tokens], left-padded: (B, L', D), (B, L')."""
        text = self.embed(input_ids)  # (B, T, D_B); Gemma scales embeddings inside its embedding module
        rows = []
        for i in range(input_ids.shape[0]):
            real = attention_mask[i].bool()
            t = text[i][real]
            audio = memory.embeds[i][memory.mask[i]].to(t.dtype)
            rows.append(torch.cat([t[:1], audio, t[1:]], dim=0))
        width = max(r.shape[0] for r in rows)
        embeds = text.new_zeros(len(rows), width, text.shape[-1])
        mask = attention_mask.new_zeros(len(rows), width)
        for i, r in enumerate(rows):
            embeds[i, width - r.shape[0] :] = r
            mask[i, width - r.shape[0] :] = 1
        return embeds, mask

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        tower_inputs: Mapping[str, Mapping[str, Any]] | None = None,
        tower_outputs: Mapping[str, TowerOutput] | None = None,
        memory: PrefixMemory | None = None,
        cache: Any = None,
        use_cache: bool = False,
        logits_to_keep: int | torch.Tensor = 0,
        output_hidden_states: bool = False,
    ) -> Any:
        """Like `Composition.forward`: the first call (no cache) reads [audio + prompt]; later calls read the new
        tokens while `attention_mask` (B, prompt + generated) is mapped onto the spliced rows."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if memory is None:
            memory = self.encode(tower_inputs, tower_outputs)
        kwargs: dict[str, Any] = {"use_cache": use_cache, "logits_to_keep": logits_to_keep, self._cache_arg: cache,
                                  "output_hidden_states": output_hidden_states}
        first = cache is None or cache.get_seq_length() == 0
        if memory is None:  # no audio: the anchor alone
            kwargs.update(input_ids=input_ids, attention_mask=attention_mask)
            mask = attention_mask
        elif first:
            embeds, mask = self._splice(input_ids, attention_mask, memory)
            memory.prefix_mask, memory.prompt_width = mask, input_ids.shape[1]
            kwargs.update(inputs_embeds=embeds, attention_mask=mask)
        else:
            mask = torch.cat([memory.prefix_mask, attention_mask[:, memory.prompt_width :]], dim=1)
            kwargs.update(input_ids=input_ids, attention_mask=mask)
        t = input_ids.shape[1] if not first or memory is None else mask.shape[1]
        kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)[:, -t:]
        return self.anchor(**kwargs)
