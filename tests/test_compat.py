"""What was written before keeps working: a run directory made before the package's restructure loads and gives
the pinned outputs, and recipes holding removed settings load where those settings held what is now built in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

import speech_calm
from speech_calm.schema import ConfigError
from speech_calm.training.recipe import MOVED, RETIRED, load_recipe
from tests.trained import TONES

FIXTURE = Path(__file__).with_name("fixtures") / "before_layout"


@pytest.fixture(scope="module")
def old_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's run directory (trained by the code of commit b0016bf), its paths pointing at this copy."""
    root = tmp_path_factory.mktemp("old") / "before_layout"
    shutil.copytree(FIXTURE, root)
    recipe = root / "run_before_layout" / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("@ROOT@", str(root)))
    return root


def test_a_run_directory_from_before_the_restructure_gives_the_same_outputs(old_run: Path) -> None:
    """Its recipe.yaml holds every removed setting (at its built-in value) and its bridges the offset prior's
    tensors under their old names; loading it needs no migration, and decoding gives, character for
    character, what the old code gave (`tests/pinned.json`, the same run)."""
    model = speech_calm.load(old_run / "run_before_layout", device="cpu")
    files = sorted(str(p) for p in (old_run / "audio").glob("*.flac"))
    results = model.transcribe(files, task="both", **TONES)  # tones, cut as before Silero and the no-speech gate
    got = [{"text": r["text"], "translation": r["translation"]} for r in results]
    want = json.loads(Path(__file__).with_name("pinned.json").read_text())["speech"]["outputs"]
    assert got == want


def test_every_removed_setting_is_in_the_old_run_directory() -> None:
    """The compatibility test above reads each retired key (so each one's migration is exercised)."""
    saved = yaml.safe_load((FIXTURE / "run_before_layout" / "recipe.yaml").read_text().replace("@ROOT@", "/x"))
    for key in [*RETIRED, *MOVED]:
        node = saved
        for part in key.split("."):
            node = node[part]


@pytest.mark.parametrize("override, message", [
    ("compose.task_batches=true", "compose.task_batches: True .* this setting was removed"),
    ("compose.bridge.relative=false", "compose.bridge.relative: False .* this setting was removed"),
    ("compose.bridge.num=3", "compose.bridge.num: 3 .* this setting was removed"),
    ("text.tokenizer=own", "text.tokenizer: 'own' .* this setting was removed"),
])
def test_a_removed_setting_that_asks_for_something_else_is_refused(tmp_path: Path, override: str,
                                                                   message: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("stages: [compose]\n")
    with pytest.raises(ConfigError, match=message):
        load_recipe(path, [override])


def test_removed_settings_at_their_built_in_value_load(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("compose:\n  task_batches: false\n  task_repeats: {}\n  bridge: {relative: true, num: null}\n"
                    "text: {tokenizer: anchor, own_vocab_size: 500}\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    assert load_recipe(path) == load_recipe(empty)


def test_a_finished_run_loads_whatever_its_training_only_settings_held(tmp_path: Path) -> None:
    """A run trained with one task per batch (removed since) still loads to transcribe: that setting shaped
    only its training. Training with it again is refused; values that meant the built-in behaviour load."""
    path = tmp_path / "recipe.yaml"
    path.write_text("compose: {task_batches: true, task_repeats: {translate: 2}}\n")
    assert load_recipe(path, trained=True) == load_recipe(_written(tmp_path, "{}"))
    with pytest.raises(ConfigError, match="compose.task_batches"):
        load_recipe(path)
    same = _written(tmp_path, "compose: {task_repeats: {translate: 1}}\n")
    assert load_recipe(same) == load_recipe(_written(tmp_path, "{}"))
    with pytest.raises(ConfigError, match="compose.bridge.relative"):  # it changed the model: never dropped
        load_recipe(_written(tmp_path, "compose: {bridge: {relative: false}}\n"), trained=True)


def _written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"r{abs(hash(text))}.yaml"
    path.write_text(text)
    return path


def test_speed_perturbation_came_back_as_encoder_augment_speeds(tmp_path: Path) -> None:
    """`encoder.speed_perturb` (removed, then brought back in `encoder.augment`) loads as `augment.speeds`, the same
    behaviour (a factor drawn per training utterance); both names with different values are refused."""
    old = load_recipe(_written(tmp_path, "encoder: {speed_perturb: [0.9, 1.0, 1.1]}\n"))
    new = load_recipe(_written(tmp_path, "encoder: {augment: {speeds: [0.9, 1.0, 1.1]}}\n"))
    assert old == new and new.encoder.augment.speeds == [0.9, 1.0, 1.1]
    assert load_recipe(_written(tmp_path, "encoder: {speed_perturb: []}\n")) == load_recipe(_written(tmp_path, "{}"))
    with pytest.raises(ConfigError, match="encoder.speed_perturb is the old name of encoder.augment.speeds"):
        load_recipe(_written(tmp_path, "encoder: {speed_perturb: [0.9], augment: {speeds: [1.1]}}\n"))
