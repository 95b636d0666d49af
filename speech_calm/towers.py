"""Frozen towers: the anchor LM and the augmenting models, behind one small interface.

An *augmenting tower* (m_A) is any frozen module that maps its input to per-layer hidden states plus a
padding mask (`TowerOutput`). The composition core (`compose.py`) only ever sees that interface, so our own
Conformer, Hugging Face speech encoders (Whisper encoder, Wav2Vec2, HuBERT, Wav2Vec2-BERT) and Hugging Face
causal LMs are interchangeable.

Layers and sizes come from the module tree and the config (`find_layers`, `anchor_spec`), never from model
names. Anchors load from a hub id, a local directory, a `.gguf` file (dequantised once, then cached on disk),
or `python:MODULE` (a package whose `assemble()` returns a `.gguf` path, as the Gemma 3 270M PyPI package does).
"""

from __future__ import annotations

import hashlib
import json
import importlib
import inspect
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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
    char_positions: (B, S) long, CTC-compressed speech only: 2 x the index of the character each state stands
        for in the transcript m_A reads (odd 2i-1: a pause before character i); what `bridge.offset_bias` uses.
    """

    hidden_states: tuple[torch.Tensor, ...]
    mask: torch.Tensor
    cache: Any = None
    char_positions: torch.Tensor | None = None

    def select(self, rows: list[int]) -> TowerOutput:
        """Batch rows `rows` of an encoder-mode output (states computed once, decoded again for some rows)."""
        index = torch.tensor(rows, device=self.mask.device)
        states = tuple(h[index] if h is not None else None for h in self.hidden_states)
        chars = self.char_positions[index] if self.char_positions is not None else None
        return TowerOutput(states, self.mask[index], char_positions=chars)  # type: ignore[arg-type]


class AugmentingTower(nn.Module):
    """Base class of every m_A. Subclasses set `num_layers`, `hidden_size` and `modality`.

    `modality` is "speech" (forward(audio=(B, T) float 16 kHz, audio_lens=(B,) samples)) or "text"
    (forward(input_ids=(B, S), attention_mask=(B, S))). `forward` returns a `TowerOutput`.
    """

    num_layers: int
    hidden_size: int
    modality: str


# --------------------------------------------------------------------------------------------------------
# Finding layers and sizes generically
# --------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------
# Hugging Face towers
# --------------------------------------------------------------------------------------------------------


class HFSpeechTower(AugmentingTower):
    """A frozen HF speech encoder (Whisper encoder, Wav2Vec2, HuBERT, Wav2Vec2-BERT) with its feature extractor.

    The feature extractor decides the model's input: raw waveforms (`input_values`) or features
    (`input_features`); the output mask follows from the real input length and the model's own length rule.
    """

    modality = "speech"

    def __init__(self, model: nn.Module, feature_extractor: Any) -> None:
        super().__init__()
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
            out_lens = self.model._get_feat_extract_output_lengths(in_lens)
        else:  # features at a fixed stride: the real share of the output is the real share of the input
            out_lens = torch.ceil(in_lens.float() * s_out / in_mask.shape[-1]).long()
        mask = torch.arange(s_out, device=audio.device)[None, :] < out_lens.to(audio.device)[:, None]
        return TowerOutput(states, mask)


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


# --------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------


def resolve_dtype(name: str, device: torch.device | str) -> torch.dtype:
    """"auto" is bf16 on CUDA and fp32 on CPU (CPU bf16 matmuls are slow and lossy); else the named dtype."""
    if name == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}; use auto, float32, bfloat16 or float16")
    return dtype


def resolve_source(source: str) -> str:
    """A model source as a path or hub id. `python:MODULE` calls MODULE.assemble() for a `.gguf` path."""
    if not source:
        raise ValueError("no model source given; set e.g. anchor.source to a hub id, a directory or a .gguf file")
    if source.startswith("python:"):
        module_name = source.split(":", 1)[1]
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ValueError(
                f"model source {source!r}: package {module_name} is not installed; `make install` installs the "
                f"demo's anchor (pip install -e '.[demo]')"
            ) from e
        if not hasattr(module, "assemble"):
            raise ValueError(f"model source {source!r}: {module_name} has no assemble() returning a .gguf path")
        return str(module.assemble())
    return os.path.expanduser(source)


def cache_root() -> Path:
    """Where dequantised `.gguf` models are cached: $SPEECH_CALM_CACHE or ~/.cache/speech_calm."""
    return Path(os.environ.get("SPEECH_CALM_CACHE", Path.home() / ".cache" / "speech_calm"))


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def dequantized_gguf(path: str | Path) -> Path:
    """A directory with the `.gguf` model dequantised to fp32 safetensors and its tokenizer; built once.

    The first call dequantises (about a minute for Gemma 3 270M on 2 cores) and saves atomically (temporary
    directory, then rename); later calls return the cached directory, keyed by the file's content hash.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    target = cache_root() / "gguf" / f"{path.stem}-{_file_digest(path)}"
    if (target / "config.json").is_file():
        return target
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"dequantising {path.name} once (cached in {target})", flush=True)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    # the weights are now plain fp32 tensors: save them as an ordinary checkpoint, without the gguf marker
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def load_anchor(
    source: str, device: torch.device | str = "cpu", dtype: str = "auto", trust_remote_code: bool = False
) -> tuple[nn.Module, Any]:
    """The frozen anchor LM and its tokenizer, from a hub id, a directory, a `.gguf` file or `python:MODULE`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = resolve_source(source)
    if where.endswith(".gguf"):
        where = str(dequantized_gguf(where))
    torch_dtype = resolve_dtype(dtype, device)
    try:
        model = _from_pretrained(AutoModelForCausalLM, where, torch_dtype, trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise OSError(_unreachable(source, e)) from e
    model.requires_grad_(False).eval().to(device)
    return model, tokenizer


def load_text_tower(
    source: str, device: torch.device | str = "cpu", dtype: str = "auto", trust_remote_code: bool = False
) -> tuple[HFTextTower, Any]:
    """A frozen HF causal LM as an augmenting tower, with its tokenizer."""
    model, tokenizer = load_anchor(source, device, dtype, trust_remote_code)
    return HFTextTower(model), tokenizer


def load_speech_tower(
    source: str, device: torch.device | str = "cpu", dtype: str = "auto", trust_remote_code: bool = False
) -> AugmentingTower:
    """A frozen speech tower: our Conformer (a directory saved by `ConformerEncoder.save_pretrained`) or an HF
    speech encoder (hub id or directory with its feature extractor)."""
    from speech_calm.encoder import MODEL_TYPE, ConformerEncoder

    where = resolve_source(source)
    torch_dtype = resolve_dtype(dtype, device)
    config_file = Path(where) / "config.json"
    if config_file.is_file() and json.loads(config_file.read_text()).get("model_type") == MODEL_TYPE:
        tower: AugmentingTower = ConformerEncoder.from_pretrained(where)
    else:
        from transformers import AutoFeatureExtractor, AutoModel

        try:
            model = _from_pretrained(AutoModel, where, torch_dtype, trust_remote_code)
            fe = AutoFeatureExtractor.from_pretrained(where, trust_remote_code=trust_remote_code)
        except OSError as e:
            raise OSError(_unreachable(source, e)) from e
        tower = HFSpeechTower(model, fe)
    tower.requires_grad_(False).eval().to(device=device, dtype=torch_dtype)
    return tower


def _from_pretrained(auto_class: Any, where: str, dtype: torch.dtype, trust_remote_code: bool) -> nn.Module:
    """`auto_class.from_pretrained`, refusing checkpoints that leave weights randomly initialised."""
    model, info = auto_class.from_pretrained(
        where, dtype=dtype, trust_remote_code=trust_remote_code, output_loading_info=True
    )
    missing = [k for k in info.get("missing_keys", []) if k not in _tied_keys(model)]
    if missing:
        raise ValueError(
            f"{where}: {len(missing)} weights of {type(model).__name__} are missing from the checkpoint "
            f"(e.g. {', '.join(sorted(missing)[:3])}), so they would be random; is this the right model or "
            f"directory? A frozen tower must load completely."
        )
    return model


def _tied_keys(model: nn.Module) -> set[str]:
    """Weights that are tied to others (e.g. an LM head sharing the embeddings) are not missing."""
    tied = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or {}
    return set(tied) if not isinstance(tied, dict) else set(tied)


def _unreachable(source: str, error: Exception) -> str:
    return (
        f"could not load model {source!r}: it is not a local directory or .gguf file, and the Hugging Face hub "
        f"did not provide it ({error.__class__.__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
        f"Offline, point the recipe at a local directory (save_pretrained) or a .gguf file; for gated models "
        f"accept the terms on the hub and set HF_TOKEN."
    )


__all__ = [
    "AnchorSpec", "AugmentingTower", "HFSpeechTower", "HFTextTower", "TowerOutput", "anchor_spec",
    "cache_argument", "cache_root", "dequantized_gguf", "find_layers", "load_anchor", "load_speech_tower", "load_text_tower", "output_cache",
    "resolve_dtype", "resolve_source",
]
