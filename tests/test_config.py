"""Configs: presets load, typos and out-of-range values are refused with a precise message."""

import time

import pytest

from vcinr.config import load_config, preset_names
from vcinr.errors import ConfigError


def test_every_preset_loads_and_validates():
    names = preset_names()
    assert {"cifar10-tiny", "cifar10", "demo"} <= set(names)
    for name in names:
        config = load_config(name)
        assert config.data is not None, name


def test_overrides_apply_to_nested_keys():
    config = load_config("cifar10-tiny", {"model.vcinr.rank": 2, "train.steps": 7, "data.path": "/x"})
    assert config.model.vcinr.rank == 2 and config.train.steps == 7 and config.data.path == "/x"


def test_unknown_key_names_the_key_and_suggests(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  widht: 64\n")
    with pytest.raises(ConfigError, match=r"model\.widht.*did you mean 'width'"):
        load_config(path)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"model.width": 0}, "model.width must be positive"),
        ({"model.conditioning": "film"}, "model.conditioning"),
        ({"train.steps": 1.5}, "train.steps must be an integer"),
        ({"meta.lr_clip": [5, -5]}, "lr_clip"),
        ({"model.vcinr.layer_norm": "yes"}, "true or false"),
        ({"train.device": "tpu"}, "train.device"),
    ],
)
def test_out_of_range_values_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("cifar10-tiny", override)


def test_missing_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="cifar10-tiny"):
        load_config("no-such-preset")


def test_invalid_yaml_is_one_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "\n" not in str(info.value)


def billion_laughs(levels: int) -> str:
    """A value of 10^levels list items in a few hundred bytes: each anchor repeats the previous one ten times."""
    anchors = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] + [
        f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "[" + ", ".join(anchors) + "]"


@pytest.mark.parametrize("text, overrides, message", [
    # issue 14: a 421-byte file whose aliases stand for 10^9 numbers hung in validation
    (f"meta:\n  lr_init: {billion_laughs(9)}\n", {}, "more than 1048576 elements"),
    ("model: " + "[" * 5000 + "]" * 5000 + "\n", {}, "nested deeper than 32 levels"),  # was a RecursionError
    ("- a list\n", {"train.steps": 3}, "config must be a mapping"),  # overrides were an AttributeError
    ("model: {width: 16}\n", {"model.width.x": 1}, "cannot set model.width.x: model.width is not a section"),
    ("train: {steps: 2}\n", {"train.steps.a.b": 1}, "cannot set train.steps.a.b: train.steps is not a section"),
])
def test_hostile_yaml_and_overrides_are_one_line(text, overrides, message, tmp_path):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, overrides)
    assert "\n" not in str(info.value)
    assert time.perf_counter() - started < 10.0


@pytest.mark.parametrize("name", [n for n in preset_names() if n.endswith("-tiny")])
def test_tiny_presets_point_at_real_data(name):
    """Tiny presets are run from the repository root against ../shared/data."""
    import dataclasses
    from pathlib import Path

    from vcinr.data import load_items

    config = load_config(name)
    if config.data.kind == "scenes":
        pytest.skip("scenes are rendered from ../shared/data's bunny on demand (vcinr make-scenes; test_scenes.py)")
    root = Path(__file__).resolve().parents[1]
    data = dataclasses.replace(config.data, path=str((root / config.data.path).resolve()), max_items=4)
    items = load_items(data, "test")
    assert items.features.shape[0] >= 1 and items.features.shape[1:-1] == items.coords.shape[:-1]
