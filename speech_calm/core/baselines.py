"""The anchor on its own, LoRA-adapted (peft) or fully fine-tuned, behind the `Composition` interface.

CALM is compared with the usual ways of teaching the anchor itself (paper §5): LoRA with as many trainable
parameters as the bridges, and full fine-tuning (the "skyline", which changes the anchor and so forgets).
`AnchorModel` gives all of them the interface the training loop and `core.decoding.generate` use
(`encode` / `forward(..., memory=, cache=, logits_to_keep=)` / `trainable_parameters`), so every row of a
results table goes through the same code. A plain frozen LM (m_A or m_B alone) is an `AnchorModel` too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from speech_calm.core.tower import cache_argument
from speech_calm.schema import ConfigError

Trainable = Literal["none", "lora", "all", "all_but_embeddings"]


@dataclass
class LoraConfig:
    """LoRA adapters (peft) in the anchor, the parameter-matched baseline: the settings every LoRA stage shares
    (the text path's `text_lora` / `kv_lora`, the speech path's `cascade`)."""

    rank: int | None = None  # None = the rank whose adapters have as many parameters as CALM's bridges
    alpha_ratio: float = 2.0  # lora_alpha = alpha_ratio * rank (peft scales the update by alpha / rank)
    dropout: float = 0.0  # dropout on the adapters' input
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])  # adapted modules


class AnchorModel(nn.Module):
    """An HF causal LM (optionally wrapped by peft) with the composition interface and no towers.

    Args:
        model: the LM. trainable: which of its weights train — "none" (a frozen baseline), "lora" (the peft
            adapters only), "all", or "all_but_embeddings" (full fine-tuning with the token embeddings, and a
            head tied to them, kept frozen: on a 262k vocabulary they are most of a small model's weights).
    """

    def __init__(self, model: nn.Module, trainable: Trainable = "none") -> None:
        super().__init__()
        self.anchor = model
        self.mode = trainable
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._cache_arg = cache_argument(base)  # peft's forward takes **kwargs: ask the wrapped model
        embeddings = {id(p) for p in base.get_input_embeddings().parameters()}
        for name, p in model.named_parameters():
            if trainable == "lora":
                p.requires_grad_("lora_" in name)
            elif trainable == "all":
                p.requires_grad_(True)
            elif trainable == "all_but_embeddings":
                p.requires_grad_(id(p) not in embeddings)
            else:
                p.requires_grad_(False)
        if trainable != "none" and not any(p.requires_grad for p in model.parameters()):
            raise ConfigError(f"nothing in {type(model).__name__} is trainable with trainable={trainable!r}")
        self.train(False)

    def train(self, mode: bool = True) -> AnchorModel:
        """A frozen baseline stays in eval mode; trained variants follow `mode`."""
        super().train(mode and self.mode != "none")
        return self

    def trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of everything that trains."""
        return ((n, p) for n, p in self.anchor.named_parameters() if p.requires_grad)

    def encode(self, tower_inputs: Any = None, tower_outputs: Any = None) -> None:
        """No augmenting model: nothing to encode (decoding calls this for compositions)."""
        if tower_inputs or tower_outputs:
            raise ValueError("an AnchorModel has no augmenting towers; give it no tower inputs")
        return None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        memory: Any = None,
        cache: Any = None,
        use_cache: bool = False,
        logits_to_keep: int | torch.Tensor = 0,
        tower_inputs: Any = None,
        tower_outputs: Any = None,
        output_hidden_states: bool = False,
    ) -> Any:
        """Like `Composition.forward`: input_ids (B, T) new tokens, attention_mask (B, past + T) (left padding
        allowed) → the LM's output with logits (B, T', V)."""
        self.encode(tower_inputs, tower_outputs)
        b, t = input_ids.shape
        if attention_mask is None:
            past = cache.get_seq_length() if cache is not None else 0
            attention_mask = torch.ones(b, past + t, dtype=torch.long, device=input_ids.device)
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -t:]  # left padding starts at 0
        return self.anchor(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=use_cache,
            logits_to_keep=logits_to_keep, output_hidden_states=output_hidden_states, **{self._cache_arg: cache},
        )


def lora_targets(model: nn.Module, names: Sequence[str]) -> list[nn.Linear]:
    """The `nn.Linear` modules whose attribute name is one of `names` (peft's own matching rule)."""
    found = [m for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in set(names) and isinstance(m, nn.Linear)]
    if not found:
        raise ConfigError(f"no linear layer of {type(model).__name__} is named any of {list(names)}; set lora.targets")
    return found


def matched_lora_rank(model: nn.Module, names: Sequence[str], params: int) -> int:
    """The LoRA rank r whose adapters on `names` have about `params` parameters: r · Σ(in + out) ≈ params."""
    per_rank = sum(m.in_features + m.out_features for m in lora_targets(model, names))
    return max(1, round(params / per_rank))


def add_lora(model: nn.Module, rank: int, names: Sequence[str], alpha_ratio: float = 2.0,
             dropout: float = 0.0) -> nn.Module:
    """`model` with peft LoRA adapters of rank `rank` on the linear layers named `names` (B = 0: at step 0
    the adapted model computes what `model` computes)."""
    from peft import LoraConfig, get_peft_model

    lora_targets(model, names)  # a clear error before peft's
    cfg = LoraConfig(r=rank, lora_alpha=alpha_ratio * rank, lora_dropout=dropout, target_modules=list(names),
                     bias="none")
    return get_peft_model(model, cfg)


def parameter_count(params: Iterator[tuple[str, nn.Parameter]]) -> int:
    return sum(p.numel() for _, p in params)
