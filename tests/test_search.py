"""Encoder-side rate-distortion search: exact rates, never worse than rounding, same decoder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vcinr.codec.levels import load_level
from vcinr.codec.search import DISTORTION_SCALE, RateProxy, SearchSettings, search_symbols
from vcinr.meta.model import load_model
from vcinr.meta.training import flat_items
from vcinr.data import load_items


def _setup(model_dir: Path, level_name: str = "3", items: int = 24):

    loaded = load_model(model_dir)
    level = load_level(loaded, level_name)
    coords, features = flat_items(load_items(loaded.config.data, "test"))
    features = features[:items]
    phi = loaded.model.encode(coords, features)
    return loaded, level, coords, features, phi


def _objective(loaded, level, coords, features, symbols) -> torch.Tensor:
    """Per item: exact bits of ``symbols`` + λ·255²·squared error / channels (the search's objective)."""
    with torch.no_grad():
        pred = loaded.model.decode(coords, level.codec.from_symbols(symbols))
    bits = torch.tensor([level.codec.estimated_bits(row[None]) for row in symbols])
    distortion = (pred - features).square().flatten(1).sum(1) / features.shape[-1]
    return bits + level.record["lambda"] * DISTORTION_SCALE * distortion


def test_rate_proxy_is_exact_on_symbols_and_continuous_between(tiny_cifar_codecs) -> None:
    loaded, level, *_ , phi = _setup(tiny_cifar_codecs)
    symbols = level.codec.to_symbols(phi)
    proxy = RateProxy(level.codec.tables)
    exact = [level.codec.estimated_bits(row[None]) for row in symbols]
    assert proxy(symbols.float()).tolist() == pytest.approx(exact, rel=1e-5)
    assert torch.isfinite(proxy(level.codec.analysis(phi))).all()
    low, high = symbols.float(), symbols.float()
    high[:, 0] += 1
    between = low.clone()
    between[:, 0] += 0.25  # a quarter of the way from one symbol to the next, in one dimension
    assert proxy(between).tolist() == pytest.approx((0.75 * proxy(low) + 0.25 * proxy(high)).tolist(), rel=1e-5)


def test_search_never_does_worse_than_rounding_and_usually_better(tiny_cifar_codecs) -> None:
    loaded, level, coords, features, phi = _setup(tiny_cifar_codecs)
    plain = level.codec.to_symbols(phi)
    searched = search_symbols(loaded.model, level.codec, coords, features, phi, level.record["lambda"],
                              SearchSettings(steps=15, lr=0.1))
    assert searched.dtype == torch.int32 and searched.shape == plain.shape
    before = _objective(loaded, level, coords, features, plain)
    after = _objective(loaded, level, coords, features, searched)
    assert (after <= before + 1e-3 * before.abs()).all()
    assert int((after < before).sum()) >= len(before) // 2  # most items find better symbols
    none = search_symbols(loaded.model, level.codec, coords, features, phi, level.record["lambda"], SearchSettings(0))
    assert torch.equal(none, plain)


def test_compress_with_effort_decodes_to_what_it_reports(tmp_path: Path, vcinr_main, capsys) -> None:
    """A bundled image model on a crop that is no multiple of its 32x32 patches: padding is not optimised for."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:40, 0:50]
    image = np.stack([np.sin(x / 4), np.cos(y / 6), np.sin((x + y) / 9)], -1) * 90 + 128 + rng.normal(0, 8, (40, 50, 3))
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(tmp_path / "in.png")
    psnrs = {}
    for effort in (0, 8):
        out = tmp_path / f"e{effort}.vci"
        assert vcinr_main(["compress", str(tmp_path / "in.png"), "--model", "image", "-q", "1", "--effort", str(effort),
                           "-o", str(out), "--quiet"]) == 0
        reported = float(capsys.readouterr().out.split("PSNR ")[1].split(" dB")[0])
        assert vcinr_main(["decompress", str(out), "-o", str(tmp_path / f"e{effort}.png"), "--quiet"]) == 0
        decoded = np.asarray(Image.open(tmp_path / f"e{effort}.png"), dtype=np.float64) / 255
        original = np.asarray(Image.open(tmp_path / "in.png"), dtype=np.float64) / 255
        psnrs[effort] = -10 * math.log10(float(np.mean((decoded - original) ** 2)))
        assert psnrs[effort] == pytest.approx(reported, abs=0.01)
    assert psnrs[8] > psnrs[0]
    with pytest.raises(SystemExit) as exit_info:  # argparse's one-line usage error
        vcinr_main(["compress", str(tmp_path / "in.png"), "--effort", "-1", "-o", str(tmp_path / "x.vci")])
    assert exit_info.value.code == 2 and "must be between 0 and 10000" in capsys.readouterr().err
