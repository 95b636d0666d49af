"""The tower contract: what an augmenting model returns, and what CALM reads off an anchor LM."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class TowerOutput:
    """What an augmenting tower returns.

    hidden_states: one tensor per tower layer, `hidden_states[i]` is the output of layer i (0-based,
        embeddings excluded), each (B, S, D_A).
    mask: (B, S) bool, True where the frame or token is real (False = padding).
    cache: a text tower's KV cache when called with `use_cache=True` (aligned mode), else None.
    positions: (B, S) long, optional: where each state stands in what m_A read, in the units a bridge's score
        bias compares with its queries' context (a CTC-compressed speech memory: 2 x the index of the character
        a slot stands for, odd 2i-1 for a pause before character i; see `towers.ctc.compress_runs`).
    """

    hidden_states: tuple[torch.Tensor, ...]
    mask: torch.Tensor
    cache: Any = None
    positions: torch.Tensor | None = None

    def select(self, rows: list[int]) -> TowerOutput:
        """Batch rows `rows` of an encoder-mode output (states computed once, decoded again for some rows)."""
        index = torch.tensor(rows, device=self.mask.device)
        states = tuple(h[index] if h is not None else None for h in self.hidden_states)
        positions = self.positions[index] if self.positions is not None else None
        return TowerOutput(states, self.mask[index], positions=positions)  # type: ignore[arg-type]


class AugmentingTower(nn.Module):
    """Base class of every m_A. Subclasses set `num_layers`, `hidden_size` and `modality`.

    `modality` is "speech" (forward(audio=(B, T) float 16 kHz, audio_lens=(B,) samples)) or "text"
    (forward(input_ids=(B, S), attention_mask=(B, S))). `forward` returns a `TowerOutput`.
    """

    num_layers: int
    hidden_size: int
    modality: str


@dataclass(frozen=True)
class AnchorSpec:
    """The anchor's shape, read from its config."""

    num_layers: int
    hidden_size: int
    num_heads: int
    vocab_size: int


def anchor_spec(model: nn.Module) -> AnchorSpec:
    """Depth, width, heads and vocabulary of an HF causal LM, from `config.get_text_config()`."""
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError(f"{type(model).__name__} has no .config; the anchor must be a Hugging Face model")
    text = config.get_text_config()
    return AnchorSpec(text.num_hidden_layers, text.hidden_size, text.num_attention_heads, text.vocab_size)


def find_layers(model: nn.Module, num_layers: int, hidden_size: int) -> nn.ModuleList:
    """The model's stack of `num_layers` transformer blocks, found in the module tree.

    A candidate is an `nn.ModuleList` of `num_layers` modules of one class, each holding a weight matrix with
    the model width on one side (which tells transformer blocks from e.g. a stack of convolutions).
    """
    candidates = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) != num_layers:
            continue
        if len({type(m) for m in module}) != 1:
            continue
        reads_width = any(  # nn.Linear, GPT-2's Conv1D, ...: a matrix with the model width on one side
            p.dim() == 2 and hidden_size in p.shape for p in module[0].parameters()
        )
        if reads_width:
            candidates.append((name, module))
    if not candidates:
        raise ValueError(
            f"could not find a stack of {num_layers} transformer layers of width {hidden_size} in "
            f"{type(model).__name__}; is this a transformer with config.num_hidden_layers={num_layers}?"
        )
    # nested stacks (e.g. a whole encoder-decoder) leave several; the shortest path is the main stack
    return min(candidates, key=lambda c: c[0].count("."))[1]


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or type(module).__name__.endswith(("RMSNorm", "LayerNorm"))


def input_norms(model: nn.Module, layers: Sequence[nn.Module]) -> list[nn.Module | None]:
    """For each layer j, the norm through which the anchor itself reads layer j's output: layer j+1's input
    norm (its first norm child: `input_layernorm`, GPT-2's `ln_1`, ...), and for the last layer the final norm
    (the last norm module outside the stack). None where none is found.
    """
    out: list[nn.Module | None] = []
    for layer in layers[1:]:
        out.append(next((m for m in layer.children() if _is_norm(m)), None))
    inside = {id(m) for layer in layers for m in layer.modules()}
    finals = [m for m in model.modules() if _is_norm(m) and id(m) not in inside]
    out.append(finals[-1] if finals else None)
    return out


def cache_argument(model: nn.Module) -> str:
    """The name of the KV-cache argument of an HF forward: `cache` (transformers >= 5.24) or `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def output_cache(output: Any) -> Any:
    """The KV cache an HF forward returned, under either name."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)
