"""Hugging Face models as towers: speech encoders (Whisper, Wav2Vec2, HuBERT, W2v-BERT) and causal LMs."""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from speech_calm.core.tower import (
    AugmentingTower,
    TowerOutput,
    cache_argument,
    find_layers,
    output_cache,
)


class _LayerRecorder:
    """Records the output of every layer of a stack during one forward (forward hooks, removed after)."""

    def __init__(self, layers: tuple[nn.Module, ...]) -> None:
        self.layers = layers
        self.outputs: list[torch.Tensor] = []

    def __enter__(self) -> _LayerRecorder:
        self.outputs = []

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self.outputs.append(output[0] if isinstance(output, tuple) else output)

        self._handles = [layer.register_forward_hook(hook) for layer in self.layers]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()


class HFSpeechTower(AugmentingTower):
    """A frozen HF speech encoder (Whisper encoder, Wav2Vec2, HuBERT, Wav2Vec2-BERT) with its feature extractor.

    The feature extractor decides the model's input: raw waveforms (`input_values`) or features
    (`input_features`); the output mask follows from the real input length and the model's own length rule,
    for the states read here (those of the encoder layers, before any adapter that shortens them further).
    A model whose feature encoder normalises over time (`feat_extract_norm: group`, the Wav2Vec2/HuBERT base
    configs) would read a padded item differently from the same item alone: it runs one item at a time.
    """

    modality = "speech"

    def __init__(self, model: nn.Module, feature_extractor: Any) -> None:
        super().__init__()
        # set when the encoder stage trained this encoder with CTC (`towers.load.load_speech_tower` attaches
        # them): what CTC compression and word timestamps read
        self.ctc_head: nn.Linear | None = None
        self.vocab: Any = None
        if getattr(model.config, "is_encoder_decoder", False):
            model = model.get_encoder()  # Whisper: keep the encoder only
        self.model = getattr(model, "base_model", model)
        self.feature_extractor = feature_extractor
        config = self.model.config
        self.num_layers = config.num_hidden_layers
        self.hidden_size = config.hidden_size
        # a tuple, not a submodule: registering the stack twice would give its weights two names
        self.layers = tuple(find_layers(self.model, self.num_layers, self.hidden_size))
        self.sampling_rate = getattr(feature_extractor, "sampling_rate", 16000)

    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> TowerOutput:
        """audio (B, T) float at 16 kHz, audio_lens (B,) samples → states (B, S, D) per layer + mask (B, S)."""
        if getattr(self.model.config, "feat_extract_norm", None) == "group" and len(audio) > 1:
            return _pad_cat([self.forward(a[None, : int(n)], n[None]) for a, n in zip(audio, audio_lens)])
        waves = [a[: int(n)].float().cpu().numpy() for a, n in zip(audio, audio_lens)]
        fixed = _fixed_length(self.feature_extractor)
        feats = self.feature_extractor(
            waves, sampling_rate=self.sampling_rate, return_tensors="pt",
            padding="max_length" if fixed else "longest", return_attention_mask=True,
        )
        dtype = next(self.model.parameters()).dtype
        inputs = feats[self.model.main_input_name].to(audio.device, dtype)
        in_mask = feats["attention_mask"].to(audio.device)
        kwargs = {self.model.main_input_name: inputs}
        if not fixed:
            kwargs["attention_mask"] = in_mask  # Whisper's encoder takes no mask: it always reads 30 s
        with _LayerRecorder(self.layers) as rec:
            self.model(**kwargs)
        states = tuple(rec.outputs)
        s_out = states[-1].shape[1]
        in_lens = in_mask.sum(-1)
        if self.model.main_input_name == "input_values" and hasattr(self.model, "_get_feat_extract_output_lengths"):
            rule = self.model._get_feat_extract_output_lengths
            # the layers' states come before the adapter (Wav2Vec2 `add_adapter`), whose stride the rule adds
            takes_adapter = "add_adapter" in inspect.signature(rule).parameters
            out_lens = rule(in_lens, add_adapter=False) if takes_adapter else rule(in_lens)
        else:  # features at a fixed stride: the real share of the output is the real share of the input
            out_lens = torch.ceil(in_lens.float() * s_out / in_mask.shape[-1]).long()
        mask = torch.arange(s_out, device=audio.device)[None, :] < out_lens.to(audio.device)[:, None]
        return TowerOutput(states, mask)


    def ctc_logits(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio (B, T), audio_lens (B,) → CTC logits (B, S, V) of the last layer, frames (B,)."""
        if self.ctc_head is None:
            raise ValueError("this speech encoder has no CTC head: train it with the encoder stage first")
        out = self(audio, audio_lens)
        return self.ctc_head(out.hidden_states[-1]), out.mask.sum(-1)


def _pad_cat(outputs: list[TowerOutput]) -> TowerOutput:
    """Outputs of single items as one batch: states right-padded with zeros, masks with False."""
    width = max(o.mask.shape[1] for o in outputs)
    states = tuple(
        torch.cat([F.pad(o.hidden_states[i], (0, 0, 0, width - o.mask.shape[1])) for o in outputs])
        for i in range(len(outputs[0].hidden_states))
    )
    return TowerOutput(states, torch.cat([F.pad(o.mask, (0, width - o.mask.shape[1])) for o in outputs]))


def _fixed_length(feature_extractor: Any) -> bool:
    """Whisper-style extractors pad every input to a fixed window (`n_samples`)."""
    return hasattr(feature_extractor, "n_samples")


class HFTextTower(AugmentingTower):
    """A frozen HF causal LM used as m_A: per-layer hidden states, and its own KV cache in aligned mode."""

    modality = "text"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = getattr(model, "base_model", model)  # the LM head is never needed
        text = self.model.config.get_text_config()
        self.num_layers = text.num_hidden_layers
        self.hidden_size = text.hidden_size
        self.vocab_size = text.vocab_size
        # a tuple, not a submodule: registering the stack twice would give its weights two names
        self.layers = tuple(find_layers(self.model, self.num_layers, self.hidden_size))
        self._cache_arg = cache_argument(self.model)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = False,
    ) -> TowerOutput:
        """input_ids (B, T) new tokens; attention_mask (B, past + T) → states (B, T, D) per layer + mask (B, T)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        t = input_ids.shape[1]
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -t:]
        with _LayerRecorder(self.layers) as rec:
            out = self.model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                use_cache=use_cache, **{self._cache_arg: cache},
            )
        mask = attention_mask[:, -t:].bool()
        return TowerOutput(tuple(rec.outputs), mask, output_cache(out) if use_cache else None)
