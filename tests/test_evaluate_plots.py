"""Figures open as PNGs of the documented size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vcinr.errors import ConfigError, InputError
from vcinr.evaluate.plots import Curve, curves_from_points, rd_plot, reconstruction_grid, reference_curve, spectrogram_figure
from vcinr.evaluate.reference import load_reference_curves
from vcinr.evaluate.points import RDPoint


def _points():
    return [RDPoint("image", codec, f"quality={q}", q, 100 * q, 20 + q / 10, bpp=q / 20)
            for codec in ("jpeg", "webp") for q in (10, 50, 90)]


def _open(path):
    with Image.open(path) as image:
        image.load()
        return image.format, image.size


def test_rd_plot(tmp_path):
    curves = curves_from_points(_points())
    assert [c.label for c in curves] == ["jpeg", "webp"] and curves[0].rates == sorted(curves[0].rates)
    curves.append(Curve("vcinr", [0.5, 1.0, 2.0], [30, 33, 36], "vcinr"))
    published = reference_curve(load_reference_curves("kodak")[0])
    assert published.kind == "published" and published.legend == "VC-INR (published)"
    curves.append(published)
    out = rd_plot(curves, tmp_path / "rd.png", title="Kodak")
    assert out.stat().st_size > 5000
    assert _open(out) == ("PNG", (640, 480))
    out = rd_plot(curves, tmp_path / "rd_log.png", log_x=True, figsize=(5, 4), dpi=80)
    assert _open(out) == ("PNG", (400, 320))


def test_rd_plot_refuses_bad_input(tmp_path):
    with pytest.raises(InputError):
        rd_plot([], tmp_path / "x.png")
    with pytest.raises(ConfigError):
        Curve("x", [1], [2], kind="dashed")
    with pytest.raises(InputError, match="does not exist"):
        rd_plot([Curve("a", [1, 2], [3, 4])], tmp_path / "missing" / "x.png")


def test_reconstruction_grid(tmp_path):
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    noisy = np.clip(original.astype(int) + rng.integers(-8, 9, original.shape), 0, 255).astype(np.uint8)
    out = reconstruction_grid(original, {"vcinr 1.0 bpp": noisy, "JPEG 1.1 bpp": original // 2 * 2},
                              tmp_path / "grid.png")
    assert _open(out) == ("PNG", (750, 500))  # 3 columns x 2 rows of 2.5 in at 100 dpi
    gray = reconstruction_grid(original[..., 0], {"a": noisy[..., 0]}, tmp_path / "gray.png", panel=2, dpi=50)
    assert _open(gray) == ("PNG", (200, 200))
    with pytest.raises(InputError, match="shape"):
        reconstruction_grid(original, {"bad": original[:16]}, tmp_path / "bad.png")


def test_spectrogram_figure(tmp_path):
    sr = 16000
    t = np.arange(sr) / sr
    clean = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    noisy = np.clip(clean + np.random.default_rng(0).integers(-300, 300, clean.shape), -32768, 32767).astype(np.int16)
    out = spectrogram_figure(clean, {"mp3 32 kbps": noisy, "opus 16 kbps": clean}, sr, tmp_path / "spec.png")
    assert _open(out) == ("PNG", (800, 600))  # 8 in wide, 3 rows of 2 in
    with pytest.raises(InputError):
        spectrogram_figure(clean, {"short": clean[:100]}, sr, tmp_path / "bad.png")
