"""Metrics: PSNR on the [0, 1] scale, MS-SSIM (with the small-image fallback), voxel accuracy, rates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vcinr.errors import InputError, VcinrError
from vcinr.evaluate import metrics


def test_psnr_uint8_known_value():
    a = np.full((8, 8, 3), 100, np.uint8)
    b = a + 1  # MSE = (1/255)^2 on [0, 1]
    assert metrics.psnr(a, b) == pytest.approx(20 * math.log10(255), abs=1e-9)
    assert metrics.psnr(a, a) == math.inf
    # float features in [0, 1] give the same number
    assert metrics.psnr(a / 255.0, b / 255.0) == pytest.approx(20 * math.log10(255), abs=1e-9)


def test_psnr_int16_uses_the_audio_mapping():
    x = np.array([-32768, 0, 32767], np.int16)
    assert np.allclose(metrics.as_unit_range(x), [0.0, 32768 / 65535, 1.0])
    y = x.copy()
    y[1] += 2  # one code off by 2 out of 3 samples
    expected = -10 * math.log10((2 / 65535) ** 2 / 3)
    assert metrics.psnr(x, y) == pytest.approx(expected, abs=1e-9)
    # round trip of the mapping is exact for every int16 code
    codes = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)
    assert np.array_equal(metrics.unit_to_int16(metrics.int16_to_unit(codes)), codes)


def test_psnr_refuses_bad_input():
    with pytest.raises(InputError, match="shapes"):
        metrics.psnr(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(InputError, match="NaN"):
        metrics.psnr(np.zeros(2), np.array([0.0, np.nan]))
    with pytest.raises(InputError):
        metrics.psnr(np.zeros(2, np.int32), np.zeros(2, np.int32))


def test_ms_ssim_matches_pytorch_msssim_on_large_images():
    from pytorch_msssim import ms_ssim as reference

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (176, 168, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    result = metrics.ms_ssim(a, b)
    assert result.kind == "ms-ssim" and result.scales == 5
    X = torch.from_numpy(a.transpose(2, 0, 1)[None].astype(np.float32) / 255)
    Y = torch.from_numpy(b.transpose(2, 0, 1)[None].astype(np.float32) / 255)
    assert result.value == pytest.approx(float(reference(X, Y, data_range=1.0)), abs=1e-6)
    assert 0.0 < result.value < 1.0
    assert metrics.ms_ssim(a, a).value == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_small_images_fall_back_and_say_so():
    assert [metrics.ms_ssim_scales(s, s) for s in (10, 11, 21, 32, 41, 81, 160, 161)] == [0, 1, 2, 2, 3, 4, 4, 5]
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # CIFAR-10 size
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    two = metrics.ms_ssim(a, b)
    assert two.kind == "ms-ssim-2" and two.scales == 2 and 0 < two.value < 1
    assert metrics.ms_ssim(a, a).value == pytest.approx(1.0, abs=1e-6)
    # one scale is plain SSIM: it agrees with pytorch_msssim.ssim
    one = metrics.ms_ssim(a[:16, :16], b[:16, :16])
    assert one.kind == "ssim"
    from pytorch_msssim import ssim

    X = torch.from_numpy(a[:16, :16].transpose(2, 0, 1)[None].astype(np.float32) / 255)
    Y = torch.from_numpy(b[:16, :16].transpose(2, 0, 1)[None].astype(np.float32) / 255)
    assert one.value == pytest.approx(float(ssim(X, Y, data_range=1.0)), abs=1e-6)
    assert metrics.ms_ssim(a[:10, :10], b[:10, :10]) is None
    # a worse reconstruction scores lower
    c = np.clip(a.astype(int) + rng.integers(-90, 91, a.shape), 0, 255).astype(np.uint8)
    assert metrics.ms_ssim(a, c).value < two.value


def test_voxel_accuracy():
    target = np.zeros((4, 4, 4), np.uint8)
    target[:2] = 1
    pred = target.astype(np.float32) * 0.9
    assert metrics.voxel_accuracy(pred, target) == 1.0
    pred[0, 0, 0] = 0.2  # one of 64 wrong
    assert metrics.voxel_accuracy(pred, target) == pytest.approx(63 / 64)
    assert metrics.voxel_accuracy(target.astype(bool), target) == 1.0
    with pytest.raises(VcinrError):
        metrics.voxel_accuracy(np.zeros((2, 2)), np.zeros((2, 3)))


def test_rate_helpers():
    assert metrics.bpp(1000, 768 * 512) == pytest.approx(8000 / 393216)
    assert metrics.kbps(12000, 3.0) == pytest.approx(32.0)
    with pytest.raises(InputError):
        metrics.bpp(10, 0)
    with pytest.raises(InputError):
        metrics.kbps(10, 0.0)


def test_audio_snr_is_psnr_plus_the_signals_power() -> None:
    """SNR of the waveform = PSNR on [0, 1] features + audio_power_db, for int16 PCM as for features."""
    from vcinr.evaluate.metrics import audio_power_db

    t = np.arange(16000) / 16000
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)  # in [-1, 1]
    noisy = wave + np.random.default_rng(0).normal(0, 0.01, wave.shape)
    features, decoded = (wave + 1) / 2, (noisy + 1) / 2
    snr = 10 * np.log10(np.sum(wave**2) / np.sum((wave - noisy) ** 2))
    assert metrics.psnr(features, decoded) + audio_power_db(features) == pytest.approx(snr, abs=1e-9)
    assert audio_power_db(features) == pytest.approx(10 * np.log10(0.15**2 / 2), abs=1e-3)
    pcm = np.round(wave * 32767).astype(np.int16)
    assert audio_power_db(pcm) == pytest.approx(audio_power_db(features), abs=1e-3)
