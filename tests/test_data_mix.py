"""``data.mix``: one item set from several sources (the bundled image model: CIFAR-10 + Kodak patches)."""

from __future__ import annotations

import pytest

from vcinr.config import load_config
from vcinr.data import DataConfig, load_items
from vcinr.errors import ConfigError, InputError


def test_mix_appends_the_other_sources_items_split_by_their_own_rules(data_dir):
    cifar = {"kind": "cifar10", "path": str(data_dir / "cifar10"), "patch": [32, 32], "max_items": 40}
    kodak = {"kind": "images", "path": str(data_dir / "kodak"), "patch": [32, 32], "max_items": 30}
    mixed = DataConfig(**cifar, mix=[kodak])
    for split in ("train", "test"):
        alone = [load_items(DataConfig(**cifar), split), load_items(DataConfig(**kodak), split)]
        items = load_items(mixed, split)
        # a capped test split keeps whole images: one Kodak image of 16 x 24 patches, not 30 patches
        kodak_items = 30 if split == "train" else 16 * 24
        assert items.features.shape == (40 + kodak_items, 32, 32, 3)
        assert (items.features[:40] == alone[0].features).all() and (items.features[40:] == alone[1].features).all()
        assert items.num_files == 41  # 40 CIFAR-10 images and the patches of one Kodak image


def test_the_image_preset_mixes_cifar_and_held_out_kodak(data_dir):
    config = load_config("image-tiny")
    assert config.data.kind == "cifar10" and config.data.mix[0]["kind"] == "images"
    assert config.data.mix[0]["test_fraction"] == 0.2  # kodim17-20 of kodim01-20 are test


def test_mixing_items_of_another_shape_or_bad_sections_is_refused(data_dir):
    cifar = {"kind": "cifar10", "path": str(data_dir / "cifar10"), "patch": [32, 32], "max_items": 8}
    odd = {"kind": "images", "path": str(data_dir / "kodak"), "patch": [16, 16], "max_items": 8}
    with pytest.raises(InputError, match="mixed-in items"):
        load_items(DataConfig(**cifar, mix=[odd]), "train")
    with pytest.raises(ConfigError, match=r"data.mix\[0\]: unknown key 'patches'"):
        DataConfig(**cifar, mix=[{"kind": "images", "path": "x", "patches": [32, 32]}])
    with pytest.raises(ConfigError, match="cannot mix in further"):
        DataConfig(**cifar, mix=[dict(cifar, mix=[cifar])])
