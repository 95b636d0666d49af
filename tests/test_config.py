"""Recipes: YAML + dotted overrides, strict keys and types with helpful messages, resolved recipe saved."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from speech_calm.config import BridgeConfig, ConfigError, Recipe, from_dict, load_recipe, save_recipe


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_load_with_overrides_and_save_resolved(tmp_path: Path) -> None:
    path = write(tmp_path, "run_dir: runs/x\nbridge:\n  every: 2\n  frame_stack: 3\ntrain:\n  optim:\n    lr: 0.01\n")
    recipe = load_recipe(path, ["train.optim.lr=3e-4", "bridge.pairs=[[0, 1], [2, 3]]", "bridge.every=null",
                                "encoder.num_layers=6", "train.optim.betas=[0.8, 0.9]"])
    assert isinstance(recipe, Recipe)
    assert recipe.train.optim.lr == 3e-4 and isinstance(recipe.train.optim.lr, float)
    assert recipe.bridge == BridgeConfig(every=None, frame_stack=3, pairs=[(0, 1), (2, 3)])
    assert recipe.encoder.num_layers == 6
    assert recipe.train.optim.betas == (0.8, 0.9)
    out = tmp_path / "run" / "recipe.yaml"
    save_recipe(recipe, out)
    assert load_recipe(out) == recipe  # the saved recipe rebuilds the same run
    assert yaml.safe_load(out.read_text())["bridge"]["pairs"] == [[0, 1], [2, 3]]


def test_int_is_accepted_where_a_float_is_expected(tmp_path: Path) -> None:
    assert load_recipe(write(tmp_path, "train:\n  optim:\n    lr: 1\n")).train.optim.lr == 1.0


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("bridge:\n  evry: 4\n", [], r"unknown key bridge\.evry; did you mean bridge\.every\?"),
        ("trian:\n  max_steps: 4\n", [], r"unknown key trian; did you mean train\?"),
        ("", ["train.optim.lrr=0.1"], r"unknown key train\.optim\.lrr; did you mean train\.optim\.lr\?"),
        ("train:\n  max_steps: many\n", [], r"train\.max_steps must be an integer, got str 'many'"),
        ("train:\n  max_steps: 2.5\n", [], r"train\.max_steps must be an integer, got float"),
        ("bridge:\n  mode: sideways\n", [], r"bridge\.mode must be one of 'encoder', 'aligned', got 'sideways'"),
        ("bridge:\n  pairs: [[1, 2, 3]]\n", [], r"bridge\.pairs\[0\] must have 2 items"),
        ("train: 5\n", [], r"train must be a mapping"),
        ("anchor:\n  trust_remote_code: yes please\n", [], r"anchor\.trust_remote_code must be true or false"),
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
    with pytest.raises(ConfigError, match=r"encoder: invalid ConformerConfig: d_model \(30\) must be divisible"):
        from_dict(Recipe, {"encoder": {"d_model": 30, "num_heads": 4}})


def test_every_field_is_documented() -> None:
    """Each recipe field carries a comment in its class source (they are the recipe's documentation)."""
    import dataclasses
    import inspect

    from speech_calm import config

    for cls in (config.BridgeConfig, config.TowerConfig, config.OptimConfig, config.TrainConfig, config.Recipe):
        source = inspect.getsource(cls)
        for f in dataclasses.fields(cls):
            line = next(line for line in source.splitlines() if line.strip().startswith(f"{f.name}:"))
            assert "#" in line or f.type in ("TrainConfig", "OptimConfig") or "field(" in line, (cls.__name__, f.name)
