"""The bundled pretrained models: listed by ``vcinr models``, picked without ``--model``, small.

The compress test uses a crop of Kodak kodim17, which the image model was not trained on
(it saw kodim01-16 and the 145 photographs of ../shared/data/photos); the full 768x512 image goes the same way
(docs/models.md has its figures).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vcinr.bundled import MODELS, bundled_models, model_for_input
from vcinr.evaluate.metrics import psnr

# about 25 MB was the aim (issue 17); the width-128 speech model (12.4 MB with four learned levels)
# takes the bundle to 30.4 MB; levels fitted at width 128 cost 0.2-0.6 dB, see docs/models.md
BUNDLE_LIMIT = 31_000_000


def test_bundled_models_cover_image_audio_and_era5_within_the_size_limit():
    models = {m.name: m for m in bundled_models()}
    assert {m.modality for m in models.values()} >= {"image", "audio", "sphere"}
    assert models["image"].item_shape == (16, 16)  # patches: any image size
    total = sum(p.stat().st_size for p in MODELS.rglob("*") if p.is_file())
    assert total <= BUNDLE_LIMIT
    assert not list(MODELS.rglob("latents.*")) and not list(MODELS.rglob(".ckpt-*"))  # no caches shipped


def test_vcinr_models_lists_name_modality_size_and_levels(vcinr_main, capsys):
    assert vcinr_main(["models"]) == 0
    out = capsys.readouterr().out
    for m in bundled_models():
        row = next(line for line in out.splitlines() if line.startswith(m.name + " "))
        assert m.modality in row
        size = float(re.search(r"([0-9.]+) MB", row).group(1))
        assert size == pytest.approx(m.size_bytes / 1e6, abs=0.01)
        assert re.search(r"\b1\b", row.split("MB", 1)[1])  # at least learned level 1


@pytest.fixture
def kodim17_crop(data_dir, tmp_path):
    """A 100x70 crop of a Kodak image the bundled image model never saw (not a multiple of the 16x16 patch)."""
    path = tmp_path / "kodim17-crop.png"
    with Image.open(data_dir / "kodak" / "kodim17.png") as image:
        image.crop((200, 300, 300, 370)).save(path)
    return path


def test_compress_without_model_uses_the_bundled_image_model(vcinr_main, kodim17_crop, tmp_path, capsys):
    vci, decoded = tmp_path / "crop.vci", tmp_path / "crop-decoded.png"
    assert vcinr_main(["compress", str(kodim17_crop), "-o", str(vci), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "bundled 'image'" in out
    bpp = float(re.search(r"([0-9.]+) bpp", out).group(1))
    printed = float(re.search(r"PSNR ([0-9.]+) dB", out).group(1))
    assert bpp == pytest.approx(8 * vci.stat().st_size / (100 * 70), abs=1e-4)

    assert vcinr_main(["decompress", str(vci), "-o", str(decoded), "--quiet"]) == 0
    assert "bundled 'image'" in capsys.readouterr().out
    original = np.asarray(Image.open(kodim17_crop).convert("RGB"))
    result = np.asarray(Image.open(decoded).convert("RGB"))
    assert result.shape == original.shape
    assert psnr(original, result) == pytest.approx(printed, abs=0.006)  # printed with 2 decimals
    assert printed > 18.0  # far better than a flat grey guess, so the model really codes the image


def test_model_name_and_directory_both_work(vcinr_main, kodim17_crop, tmp_path, capsys):
    image = model_for_input(kodim17_crop)
    a, b = tmp_path / "a.vci", tmp_path / "b.vci"
    assert vcinr_main(["compress", str(kodim17_crop), "--model", "image", "-q", "1", "-o", str(a), "--quiet"]) == 0
    assert vcinr_main(["compress", str(kodim17_crop), "--model", str(image.directory), "-q", "1", "-o", str(b),
                       "--quiet"]) == 0
    assert a.read_bytes() == b.read_bytes()


def test_no_bundled_model_is_a_one_line_error(vcinr_main, data_dir, tmp_path, capsys):
    code = vcinr_main(["compress", str(data_dir / "video" / "realshort.mp4"), "-o", str(tmp_path / "v.vci")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no bundled model for video files" in err and "\n" not in err
    assert not (tmp_path / "v.vci").exists()
    code = vcinr_main(["compress", str(data_dir / "video" / "realshort.mp4"), "--model", "nonesuch",
                       "-o", str(tmp_path / "v.vci")])
    assert code == 2 and "neither a model directory nor a bundled model" in capsys.readouterr().err


def test_demo_round_trips_every_sample_and_writes_the_report(vcinr_main, tmp_path, capsys):
    out = tmp_path / "report"
    assert vcinr_main(["demo", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = report["rows"]
    assert {r["modality"] for r in rows} == {"image", "audio", "sphere"} and len(rows) == 6
    for r in rows:
        assert r["psnr"] == pytest.approx(r["decoded_psnr"], abs=1e-6)  # compress printed what decompress gives
        vci = out / "files" / f"{Path(r['file']).stem}-q{r['quality'].split()[0]}.vci"
        assert vci.stat().st_size == r["bytes"]
        assert r["anchor_point"]["codec"] == {"image": "jpeg", "sphere": "jpeg", "audio": "mp3"}[r["modality"]]
        best = r["best_point"]  # the strongest standard codec at about the same rate
        assert best["codec"] in ({"opus"} if r["modality"] == "audio" else {"webp", "avif"})
        if r["modality"] == "audio":  # SNR beside PSNR, for vcinr and the codecs alike
            assert r["snr"] is not None and r["snr"] < r["psnr"] - 20
            assert best["snr"] - best["psnr"] == pytest.approx(r["snr"] - r["psnr"])
        else:
            assert r["snr"] is None and best["snr"] is None
    image = next(r for r in rows if r["modality"] == "image")
    assert image["rate"] == pytest.approx(8 * image["bytes"] / (384 * 256))
    for name in ("rd-image.png", "rd-audio.png", "rd-sphere.png", "reconstructions-image.png",
                 "spectrograms-audio.png", "reconstructions-sphere.png"):
        assert (out / name).stat().st_size > 1000
    assert (out / "report.md").read_text().count("\n| ") == 7  # header + 6 rows


def test_demo_snr_is_the_waveform_snr():
    """SNR = PSNR + signal power (dB) on audio features equals 10·log10(Σx² / Σ(x − x̂)²) on the int16 samples."""
    from vcinr.demo import signal_power_db
    from vcinr.evaluate.metrics import unit_to_int16

    rng = np.random.default_rng(0)
    x = np.round(rng.normal(0, 3000, 16000)).clip(-32768, 32767)
    y = np.round(x + rng.normal(0, 300, x.shape)).clip(-32768, 32767)
    f, g = (x + 32768) / 65535, (y + 32768) / 65535
    assert np.array_equal(unit_to_int16(f), x.astype(np.int16))
    direct = 10 * np.log10(np.sum(x**2) / np.sum((x - y) ** 2))
    assert psnr(f, g) + signal_power_db(f) == pytest.approx(direct, abs=0.01)


def test_strongest_codec_is_the_best_psnr_within_the_rate_window():
    from vcinr.demo import best_at_rate
    from vcinr.evaluate.points import RDPoint

    def point(codec, rate, psnr):
        return RDPoint(modality="image", codec=codec, setting=f"q={rate}", value=rate, bytes=1.0, psnr=psnr, bpp=rate)

    points = [point("webp", 0.20, 30.0), point("avif", 0.24, 31.0), point("avif", 0.40, 40.0),
              point("jpeg", 0.21, 35.0)]
    assert best_at_rate(points, 0.21, ("webp", "avif")).psnr == 31.0  # 0.40 bpp is too far, jpeg not asked
    assert best_at_rate(points, 2.0, ("webp", "avif")).rate == 0.40  # none close: the nearest


@pytest.mark.parametrize("damage", [lambda meta: meta.pop("item"), lambda meta: meta.update(fingerprint=7),
                                    lambda meta: meta["item"].update(item_shape="32x32")])
def test_a_damaged_bundled_model_is_a_one_line_error(damage, monkeypatch, tmp_path, vcinr_main, capsys):
    """Issue 14: a damaged bundled config.json was a KeyError/TypeError traceback in every command."""
    import shutil

    import vcinr.bundled

    shutil.copytree(MODELS / "image", tmp_path / "image")
    meta = json.loads((tmp_path / "image" / "config.json").read_text())
    damage(meta)
    (tmp_path / "image" / "config.json").write_text(json.dumps(meta))
    monkeypatch.setattr(vcinr.bundled, "MODELS", tmp_path)
    code = vcinr_main(["models"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "config.json" in err, err
