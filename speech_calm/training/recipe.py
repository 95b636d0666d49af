"""A whole run: the recipe tree, loaded strictly from YAML with dotted overrides.

Each section is defined beside the code that reads it (`speech.config`, `text.config`); this module only joins
them. Settings that no recipe uses any more were removed; a recipe or a run directory written before that
still loads when it holds them at the value that is now built in (`RETIRED`), and fails with a message that
says what to do otherwise. Settings that came back under another name are moved there (`MOVED`).

    recipe = load_recipe("recipes/telugu.yaml", ["compose.train.max_steps=200"])
    save_recipe(recipe, run_dir / "recipe.yaml")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from speech_calm.schema import ConfigError, from_dict, read_yaml, save_config
from speech_calm.speech.config import CascadeStageConfig, ComposeStageConfig, DataConfig, EncoderStageConfig
from speech_calm.text.config import KVConfig, TextConfig


@dataclass
class Recipe:
    """A whole run. Sections not used by a recipe's stages keep their defaults."""

    run_dir: str = "runs/default"  # where checkpoints, metrics and the resolved recipe go
    seed: int = 0  # seeds python, numpy and torch
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = cuda when available
    stages: list[str] = field(default_factory=list)  # stages to run, in order (encoder, compose, ...)
    data: DataConfig = field(default_factory=DataConfig)  # speech corpora
    encoder: EncoderStageConfig = field(default_factory=EncoderStageConfig)  # stage `encoder`
    compose: ComposeStageConfig = field(default_factory=ComposeStageConfig)  # stage `compose`
    cascade: CascadeStageConfig = field(default_factory=CascadeStageConfig)  # stage `cascade` (a baseline)
    kv: KVConfig = field(default_factory=KVConfig)  # the key-value arithmetic experiment (stages kv_*)
    text: TextConfig = field(default_factory=TextConfig)  # the Telugu→English text path (stages text_*)


BRIDGES = ("compose.bridge", "kv.compose.bridge", "text.compose.bridge")
ANY = object()  # a removed setting that was read only together with another one: any value loads
# removed setting -> the behaviour that is now built in (what a saved recipe holds when it asked for nothing else)
RETIRED: dict[str, Any] = {
    "compose.task_batches": False,  # one task per batch: chained translation trains both tasks in one row
    "compose.task_repeats": {},  # more rows for a task: likewise
    "text.tokenizer": "anchor",  # m_A reads the anchor's tokens (its own BPE tokenizer was never better)
    "text.own_vocab_size": ANY,  # that tokenizer's size (read only with tokenizer=own)
    **{f"{b}.relative": True for b in BRIDGES},  # every update is scaled by the anchor state's RMS
    **{f"{b}.num": None for b in BRIDGES},  # connections are chosen by bridge.every or bridge.pairs
    # the offset prior is the speech path's (speech.offsets): the text experiments' bridges never had one
    "kv.compose.bridge.offset_bias": None,
    "text.compose.bridge.offset_bias": None,
    "text.decoding.max_tokens_per_second": ANY,  # a cap per second of audio: text has none
}
# read only while training: a finished run loads for inference whatever they held
TRAINING_ONLY = {"compose.task_batches", "compose.task_repeats"}
# old key -> its key now, meaning the same: a recipe or run directory holding the old key loads as if it held the new
MOVED: dict[str, str] = {
    "encoder.speed_perturb": "encoder.augment.speeds",  # a speed factor drawn per training utterance, as before
}


def _pop(data: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    """Remove the setting at `dotted` ("section.sub.key") from nested `data`: (whether it was there, its value)."""
    *parents, leaf = dotted.split(".")
    node: Any = data
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or leaf not in node:
        return False, None
    return True, node.pop(leaf)


def _move(data: dict[str, Any], where: Path) -> None:
    """Rename settings that moved (`MOVED`) in place; refuse a recipe that holds both names with different values."""
    for old, new in MOVED.items():
        found, value = _pop(data, old)
        if not found:
            continue
        target = data
        *new_parents, new_leaf = new.split(".")
        for part in new_parents:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                return  # not a mapping: schema checking reports it
            target = child
        if new_leaf in target and target[new_leaf] != value:
            raise ConfigError(f"{old}: {value!r} and {new}: {target[new_leaf]!r} in {where} (or its overrides): "
                              f"{old} is the old name of {new}; keep only {new}")
        target[new_leaf] = value


def _means_builtin(value: Any, builtin: Any) -> bool:
    """Whether a removed setting's value asks for what is now built in (`{translate: 1}` repeats nothing)."""
    if builtin is ANY or value == builtin:
        return True
    if isinstance(value, dict) and builtin == {}:
        return all(v == 1 for v in value.values())  # rows per task and epoch
    if isinstance(value, list) and builtin == []:
        return all(v == 1.0 for v in value)  # speed factors
    return False


def _retire(data: dict[str, Any], where: Path, trained: bool) -> None:
    """Drop removed settings in place where they hold the built-in behaviour; refuse them otherwise."""
    for key, builtin in RETIRED.items():
        found, value = _pop(data, key)
        if not found:
            continue
        if not _means_builtin(value, builtin) and not (trained and key in TRAINING_ONLY):
            raise ConfigError(
                f"{key}: {value!r} in {where} (or its overrides): this setting was removed (the code now always "
                f"does what {builtin!r} did); delete the key, or use an older speech_calm for this recipe"
            )


def load_recipe(path: str | Path, overrides: list[str] | None = None, *, trained: bool = False) -> Recipe:
    """Read a YAML recipe (or a run directory's `recipe.yaml`), apply `a.b=value` overrides, and build it.

    trained: the recipe of a finished run, loaded to use what it trained (settings that only shaped the
    training, and were removed since, are dropped whatever they held).
    """
    data = read_yaml(path, overrides)
    _move(data, Path(path))
    _retire(data, Path(path), trained)
    return from_dict(Recipe, data)


def tower_source(recipe: Recipe, run_dir: Path) -> str:
    """m_A for the composition: the recipe's compose.tower.source, else this run's encoder stage result."""
    return recipe.compose.tower.source or str(Path(run_dir) / "encoder" / "model")


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write the resolved recipe as YAML, atomically: what a run directory says it was made by."""
    save_config(recipe, path)
