"""Recipes: YAML + dotted overrides, strict keys and types with helpful messages, resolved recipe saved."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from speech_calm.schema import ConfigError, from_dict
from speech_calm.speech.config import SpeechBridgeConfig
from speech_calm.training.recipe import Recipe, load_recipe, save_recipe


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_load_with_overrides_and_save_resolved(tmp_path: Path) -> None:
    path = write(tmp_path, "run_dir: runs/x\ncompose:\n  bridge:\n    every: 2\n    frame_stack: 3\n  train:\n    optim:\n      lr: 0.01\n")
    recipe = load_recipe(path, ["compose.train.optim.lr=3e-4", "compose.bridge.pairs=[[0, 1], [2, 3]]",
                                "compose.bridge.every=null", "encoder.model.num_layers=6",
                                "compose.train.optim.betas=[0.8, 0.9]"])
    assert isinstance(recipe, Recipe)
    assert recipe.compose.train.optim.lr == 3e-4 and isinstance(recipe.compose.train.optim.lr, float)
    assert recipe.compose.bridge == SpeechBridgeConfig(every=None, frame_stack=3, pairs=[(0, 1), (2, 3)])
    assert recipe.encoder.model.num_layers == 6
    assert recipe.compose.train.optim.betas == (0.8, 0.9)
    out = tmp_path / "run" / "recipe.yaml"
    save_recipe(recipe, out)
    assert load_recipe(out) == recipe  # the saved recipe rebuilds the same run
    assert yaml.safe_load(out.read_text())["compose"]["bridge"]["pairs"] == [[0, 1], [2, 3]]


def test_int_is_accepted_where_a_float_is_expected(tmp_path: Path) -> None:
    assert load_recipe(write(tmp_path, "encoder:\n  train:\n    optim:\n      lr: 1\n")).encoder.train.optim.lr == 1.0


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("compose:\n  bridge:\n    evry: 4\n", [], r"unknown key compose\.bridge\.evry; did you mean compose\.bridge\.every\?"),
        ("encodr:\n  source: x\n", [], r"unknown key encodr; did you mean encoder\?"),
        ("", ["encoder.train.optim.lrr=0.1"], r"unknown key encoder\.train\.optim\.lrr; did you mean encoder\.train\.optim\.lr\?"),
        ("", ["encoder.model.d_modle=8"], r"unknown key encoder\.model\.d_modle; did you mean encoder\.model\.d_model\?"),
        ("encoder:\n  train:\n    max_steps: many\n", [], r"encoder\.train\.max_steps must be an integer, got str 'many'"),
        ("", ["compose.train.max_steps=2.5"], r"compose\.train\.max_steps must be an integer, got float"),
        ("", ["compose.bridge.mode=sideways"], r"compose\.bridge\.mode must be one of 'encoder', 'aligned', got 'sideways'"),
        ("", ["compose.bridge.pairs=[[1, 2, 3]]"], r"compose\.bridge\.pairs\[0\] must have 2 items"),
        ("", ["compose.tasks=[transcribe, summarise]"], r"compose\.tasks\[1\] must be one of"),
        ("compose: 5\n", [], r"compose must be a mapping"),
        ("compose:\n  anchor:\n    trust_remote_code: yes please\n", [], r"compose\.anchor\.trust_remote_code must be true or false"),
        ("", ["train.max_steps"], r"must look like section\.key=value"),
        ("run_dir: x\n", ["run_dir.x=1"], r"run_dir is a value, not a section"),
        ("", ["run_dir.x=1"], r"run_dir must be a string, got dict"),
        ("- a\n- b\n", [], r"must be a mapping of keys to values"),
    ],
)
def test_bad_recipes_fail_clearly(tmp_path: Path, text: str, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_recipe(write(tmp_path, text), overrides)


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_nested_dataclass_validation_reports_path() -> None:
    with pytest.raises(ConfigError, match=r"encoder\.model: invalid ConformerConfig: d_model \(30\) must be divisible"):
        from_dict(Recipe, {"encoder": {"model": {"d_model": 30, "num_heads": 4}}})


def test_every_field_is_documented() -> None:
    """Each recipe field carries a comment in its class source (they are the recipe's documentation), whichever
    module defines the section: the whole tree is walked from `Recipe`."""
    import dataclasses
    import inspect
    import typing

    seen, todo = set(), [Recipe]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            owner = next(c for c in cls.__mro__ if f.name in vars(c).get("__annotations__", {}))  # inherited?
            source = inspect.getsource(owner)
            line = next(line for line in source.splitlines() if line.strip().startswith(f"{f.name}:"))
            assert "#" in line, f"{cls.__name__}.{f.name} has no comment saying what it is"
            todo += [t for t in (hints[f.name], *typing.get_args(hints[f.name])) if dataclasses.is_dataclass(t)]
    assert len(seen) >= 15  # every section was reached (Recipe, speech, text, bridges, towers, loops, ...)
