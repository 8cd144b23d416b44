"""Whole-signal quality: validation PSNR is one MSE over every point of a file, not a mean of patches."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vcinr.config import load_config
from vcinr.data import DataConfig, load_items
from vcinr.meta.items import flat_items
from vcinr.meta.model import build_model
from vcinr.meta.quality import SignalQuality
from vcinr.meta.training import evaluate
from vcinr.patching import merge_patches, patch_mask, split_patches
from vcinr.training import item_spec


def test_whole_signal_psnr_is_one_mse_over_the_signal_not_a_mean_of_patch_psnrs() -> None:
    target = torch.zeros(2, 4, 1)
    pred = target.clone()
    pred[0] += 0.1  # one bad patch, one perfect patch of the same signal
    pred[1] += 0.001
    quality = SignalQuality(1)
    quality.add(pred, target, torch.tensor([0, 0]))
    result = quality.result()
    assert result["psnr"] == pytest.approx(-10 * math.log10((0.01 + 1e-6) / 2), abs=1e-5)
    assert result["psnr_patch_mean"] == pytest.approx((20.0 + 60.0) / 2, abs=1e-4)
    assert result["psnr_patch_mean"] > result["psnr"] + 15


def test_padding_is_not_scored_and_signals_are_averaged() -> None:
    mask = patch_mask((3,), (2,))  # two patches of 2 points over a signal of 3: the 4th point is padding
    assert mask.tolist() == [[True, True], [True, False]]
    target = torch.zeros(2, 2, 1)
    pred = target.clone()
    pred[1, 1] = 1.0  # wrong only on the padding
    pred[0, 0] = 0.1
    quality = SignalQuality(2)
    quality.add(pred, target, torch.tensor([0, 0]), mask)
    quality.add(target[:1] + 0.01, target[:1], torch.tensor([1]))
    psnr_a = -10 * math.log10(0.01 / 3)
    assert quality.result()["psnr"] == pytest.approx((psnr_a + 40.0) / 2, abs=1e-5)


def test_snr_of_audio_like_features() -> None:
    target = torch.full((1, 4, 1), 0.5)
    target[0, ::2] = 0.9  # two points 0.4 above the centre: energy 2 · 0.16
    pred = target + 0.05
    quality = SignalQuality(1, snr_centre=0.5)
    quality.add(pred, target, torch.tensor([0]))
    assert abs(quality.result()["snr"] - 10 * math.log10((2 * 0.16) / (4 * 0.0025))) < 1e-4


def _images(folder: Path, sizes: list[tuple[int, int]]) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i, (h, w) in enumerate(sizes):
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([np.sin(x / (3 + i)), np.cos(y / 5), np.sin((x + y) / 7)], -1) * 100 + 128
        Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)).save(
            folder / f"img{i}.png")


def test_validation_psnr_is_the_psnr_of_the_merged_whole_images(tmp_path: Path) -> None:
    """``evaluate`` scores exactly what merging the decoded patches of each held-out file gives."""
    sizes = [(20, 28), (24, 16), (18, 30), (16, 16)]  # none a multiple of 16 in both axes but the last
    _images(tmp_path / "imgs", sizes)
    cfg = DataConfig(kind="images", path=str(tmp_path / "imgs"), patch=[16, 16], test_fraction=0.75)
    items = load_items(cfg, "test")
    assert items.num_files == 3 and items.point_mask is not None
    config = load_config("kodak-tiny", {"model.width": 16, "model.latent_dim": 8, "model.vcinr.hidden": 16})
    torch.manual_seed(0)
    model = build_model(config, item_spec(config, items)).eval()
    result = evaluate(model, items, max_items=10_000, batch_size=5)

    coords, features = flat_items(items)
    with torch.no_grad():
        pred = model.predict(coords, model.adapt(coords, features)).clamp(0, 1)
    files = items.files()
    psnrs, patch_psnrs = [], []
    for index, path in enumerate(sorted((tmp_path / "imgs").iterdir())[1:]):
        image = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255)
        mine = files == index
        decoded = merge_patches(pred[mine].reshape(-1, 16, 16, 3), image.shape[:2])
        assert torch.equal(merge_patches(features[mine].reshape(-1, 16, 16, 3), image.shape[:2]), image)
        psnrs.append(-10 * math.log10(float((decoded.double() - image.double()).square().mean())))
        inside = items.point_mask[mine].flatten(1)[..., None]  # padding points are not the image's
        errors = ((pred[mine] - features[mine]).square() * inside).sum((1, 2)) / (3 * inside.sum((1, 2)))
        patch_psnrs += (-10 * torch.log10(errors.double())).tolist()
    assert abs(result["psnr"] - float(np.mean(psnrs))) < 1e-4
    assert abs(result["psnr_patch_mean"] - float(np.mean(patch_psnrs))) < 1e-3
    # a cap keeps whole signals: the first file only (2 patches), never a part of the second (4)
    assert [split_patches(torch.zeros(*size, 3), (16, 16)).shape[0] for size in sizes[1:]] == [2, 4, 1]
    capped = evaluate(model, items, max_items=5, batch_size=5)
    assert abs(capped["psnr"] - psnrs[0]) < 1e-4
