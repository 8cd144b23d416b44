"""Distortion and rate metrics, with the value ranges the paper and the modalities use.

**PSNR** is ``-10·log10(MSE)`` on features scaled to ``[0, 1]`` (paper section 4), i.e. with a
peak of 1.  :func:`as_unit_range` puts raw arrays on that scale:

* ``uint8`` (images, video, 8-bit sphere grids): ``x / 255``.
* ``int16`` (audio PCM): ``(x + 32768) / 65535`` — the audio modality's mapping, so ``0`` is
  the most negative and ``1`` the most positive code.  Audio PSNR is therefore PSNR of the
  waveform against a peak-to-peak range of 65535 codes (full scale ``[-1, 1]`` has range 2).
* ``bool``: ``0``/``1``; floating point: taken as already in ``[0, 1]`` (not clipped).

PSNR is computed once over the whole signal (all pixels, channels, frames or samples); an
exact reconstruction gives ``inf``.  Averages over a data set are means of per-item PSNRs,
as CompressAI's evaluation does.

**MS-SSIM** (images only) uses ``pytorch_msssim`` with its defaults (Gaussian window 11,
σ 1.5, K = (0.01, 0.03), the five standard scale weights) on ``[0, 1]`` float32 data.  It is
slow on CPU (about 1–3 s for a 768×512 image on two cores), which is why the baselines can
leave it out.  Five scales
need the smaller image side to exceed ``(11 - 1)·2⁴ = 160`` pixels.  For smaller images
(CIFAR-10 is 32×32) :func:`ms_ssim` uses as many scales as fit — the largest ``L`` with
``side > 10·2^(L-1)`` — with the first ``L`` standard weights renormalised to sum to 1, and
says so in :attr:`SSIMResult.kind` (``"ms-ssim-2"`` for two scales, ``"ssim"`` for one).
Values of different kinds are not comparable; only ``"ms-ssim"`` is the standard metric.
Images with a side of 10 pixels or fewer get ``None``.

**Rates**: ``bpp = 8·bytes / points`` (pixels, grid points or ``T·H·W`` for video — not
multiplied by channels) and ``kbps = 8·bytes / seconds / 1000``, always from the complete
file that was written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vcinr.errors import InputError

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MSSSIM_WIN_SIZE = 11
AUDIO_INT16_TO_UNIT = "(x + 32768) / 65535"


def _numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def as_unit_range(x) -> np.ndarray:
    """``x`` as float64 on the ``[0, 1]`` scale PSNR is defined on (see the module docstring)."""
    a = _numpy(x)
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if a.dtype == np.int16:
        return (a.astype(np.float64) + 32768.0) / 65535.0
    if a.dtype == np.bool_:
        return a.astype(np.float64)
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float64)
    raise InputError(f"cannot put a {a.dtype} array on the [0, 1] scale (use uint8, int16, bool or float)")


def int16_to_unit(x) -> np.ndarray:
    """Audio PCM codes to features: ``(x + 32768) / 65535``."""
    return (_numpy(x).astype(np.float64) + 32768.0) / 65535.0


def unit_to_int16(f) -> np.ndarray:
    """Inverse of :func:`int16_to_unit` (rounded and clipped to the int16 range)."""
    codes = np.rint(np.clip(_numpy(f).astype(np.float64), 0.0, 1.0) * 65535.0 - 32768.0)
    return codes.astype(np.int16)


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    x, y = as_unit_range(a), as_unit_range(b)
    if x.shape != y.shape:
        raise InputError(f"cannot compare arrays of shapes {x.shape} and {y.shape}")
    if x.size == 0:
        raise InputError("cannot compare empty arrays")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("cannot compare arrays holding NaN or infinite values")
    return x, y


def mse(a, b) -> float:
    """Mean squared error on the ``[0, 1]`` scale (see :func:`as_unit_range`)."""
    x, y = _pair(a, b)
    return float(np.mean((x - y) ** 2))


def psnr_from_mse(value: float, peak: float = 1.0) -> float:
    """``10·log10(peak² / mse)``; ``inf`` for an exact reconstruction."""
    if value <= 0.0:
        return math.inf
    return float(10.0 * math.log10(peak * peak / value))


def psnr(a, b) -> float:
    """PSNR in dB of ``b`` against ``a`` on the ``[0, 1]`` scale (``-10·log10(MSE)``)."""
    return psnr_from_mse(mse(a, b))


@dataclass(frozen=True)
class SSIMResult:
    """An (MS-)SSIM value and what was actually computed.

    ``kind`` is ``"ms-ssim"`` (standard five scales), ``"ms-ssim-L"`` (``L`` < 5 scales on a
    small image) or ``"ssim"`` (one scale).
    """

    value: float
    kind: str
    scales: int

    @property
    def db(self) -> float:
        """``-10·log10(1 - value)``, the paper's figure 11(b) scale (``inf`` at 1)."""
        return psnr_from_mse(1.0 - self.value)


def _image_tensor(x: np.ndarray) -> torch.Tensor:
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise InputError(f"MS-SSIM needs an (H, W) or (H, W, C) image, got shape {x.shape}")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].to(torch.float32)


def ms_ssim_scales(height: int, width: int) -> int:
    """How many MS-SSIM scales fit an image: 5, fewer for small images, 0 if none."""
    side = min(height, width)
    scales = 0
    while scales < len(MSSSIM_WEIGHTS) and side > (MSSSIM_WIN_SIZE - 1) * 2**scales:
        scales += 1
    return scales


def ms_ssim(a, b) -> SSIMResult | None:
    """MS-SSIM of image ``b`` against ``a`` on ``[0, 1]`` data; fewer scales for small images.

    Returns ``None`` when not even one scale fits (a side of 10 pixels or fewer).
    """
    from pytorch_msssim import ms_ssim as reference_ms_ssim
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    x, y = _pair(a, b)
    if x.ndim not in (2, 3):
        raise InputError(f"MS-SSIM needs an (H, W) or (H, W, C) image, got shape {x.shape}")
    scales = ms_ssim_scales(x.shape[0], x.shape[1])
    if scales == 0:
        return None
    X, Y = _image_tensor(x), _image_tensor(y)
    if scales == len(MSSSIM_WEIGHTS):
        value = reference_ms_ssim(X, Y, data_range=1.0, win_size=MSSSIM_WIN_SIZE)
        return SSIMResult(float(value), "ms-ssim", scales)
    # The same loop as pytorch_msssim.ms_ssim, stopped after `scales` levels.
    weights = torch.tensor(MSSSIM_WEIGHTS[:scales], dtype=torch.float32)
    weights = weights / weights.sum()
    win = _fspecial_gauss_1d(MSSSIM_WIN_SIZE, 1.5).repeat([X.shape[1], 1, 1, 1])
    mcs = []
    for level in range(scales):
        ssim_per_channel, cs = _ssim(X, Y, data_range=1.0, win=win, size_average=False)
        if level < scales - 1:
            mcs.append(torch.relu(cs))
            padding = [s % 2 for s in X.shape[2:]]
            X = torch.nn.functional.avg_pool2d(X, kernel_size=2, padding=padding)
            Y = torch.nn.functional.avg_pool2d(Y, kernel_size=2, padding=padding)
    stacked = torch.stack(mcs + [torch.relu(ssim_per_channel)], dim=0)
    value = torch.prod(stacked ** weights.view(-1, 1, 1), dim=0).mean()
    return SSIMResult(float(value), "ssim" if scales == 1 else f"ms-ssim-{scales}", scales)


def voxel_accuracy(prediction, target, threshold: float = 0.5) -> float:
    """Fraction of voxels whose occupancy (``> threshold``) matches the target's (paper table 1)."""
    p, t = _numpy(prediction), _numpy(target)
    if p.shape != t.shape:
        raise InputError(f"cannot compare occupancy grids of shapes {p.shape} and {t.shape}")
    if p.size == 0:
        raise InputError("cannot compare empty occupancy grids")
    p_occ = p if p.dtype == np.bool_ else p.astype(np.float64) > threshold
    t_occ = t if t.dtype == np.bool_ else t.astype(np.float64) > threshold
    return float(np.mean(p_occ == t_occ))


def audio_power_db(features, centre: float = 0.5) -> float:
    """``10·log10(mean((f − centre)²))`` of audio features in [0, 1]: a file's SNR is its PSNR plus this.

    Audio features are the waveform mapped to [0, 1] (``½`` is silence), and PSNR is
    ``−10·log10(MSE)`` on them, so ``SNR = 10·log10(Σ(f − ½)² / Σ(f − f̂)²)`` — the waveform's
    signal-to-noise ratio — is the PSNR plus the signal's power in dB, for any reconstruction.
    The peak-to-peak scale makes quiet speech score high in PSNR; the SNR does not.
    """
    power = float(np.mean(np.square(as_unit_range(features) - centre)))
    return 10.0 * math.log10(power) if power > 0 else -math.inf


def bpp(num_bytes: float, num_points: int) -> float:
    """Bits per pixel (grid point, voxel): ``8·bytes / points``."""
    if num_points <= 0:
        raise InputError(f"bits per pixel needs a positive number of points, got {num_points}")
    return 8.0 * float(num_bytes) / float(num_points)


def kbps(num_bytes: float, seconds: float) -> float:
    """Kilobits per second: ``8·bytes / seconds / 1000``."""
    if not seconds > 0:
        raise InputError(f"kbps needs a positive duration, got {seconds} s")
    return 8.0 * float(num_bytes) / float(seconds) / 1000.0


__all__ = [
    "AUDIO_INT16_TO_UNIT",
    "MSSSIM_WEIGHTS",
    "SSIMResult",
    "as_unit_range",
    "audio_power_db",
    "bpp",
    "int16_to_unit",
    "kbps",
    "ms_ssim",
    "ms_ssim_scales",
    "mse",
    "psnr",
    "psnr_from_mse",
    "unit_to_int16",
    "voxel_accuracy",
]
