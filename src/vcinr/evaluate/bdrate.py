"""Bjøntegaard delta rate and delta PSNR between two rate–distortion curves.

Both follow VCEG-M33 (Bjøntegaard, 2001): fit each curve, integrate the difference over the
interval where both curves have data, divide by the interval's length.

* **BD-rate** (percent): ``log(rate)`` is fitted as a function of PSNR; the mean difference
  ``Δ`` of ``ln(rate_test) - ln(rate_anchor)`` over the overlapping PSNR range gives
  ``100·(exp(Δ) - 1)``.  Negative = the test curve needs fewer bits for the same quality.
* **BD-PSNR** (dB): PSNR is fitted as a function of ``log(rate)``; the mean of
  ``psnr_test - psnr_anchor`` over the overlapping log-rate range.  Positive = better.

Fits (``method``):

* ``"pchip"`` (default): piecewise cubic Hermite interpolation through the points, integrated
  exactly — the variant of the JVET common test conditions (JCTVC-L0242 / the ``bjontegaard``
  package's ``pchip``); it never overshoots and takes any number ≥ 2 of points.
* ``"cubic"``: the original least-squares cubic polynomial (needs ≥ 4 distinct points).

Points are sorted; points with the same abscissa are averaged.  The result is ``None`` with a
reason when a curve has too few distinct points or the curves do not overlap.  Rates may be
in any unit (bpp, kbps, bytes) as long as both curves use the same one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vcinr.errors import ConfigError, InputError

METHODS = ("pchip", "cubic")


@dataclass(frozen=True)
class BDResult:
    """A Bjøntegaard delta: ``value`` (percent for BD-rate, dB for BD-PSNR) or ``None``.

    ``reason`` says why ``value`` is ``None``; ``interval`` is the overlapping range that was
    integrated over (PSNR in dB for BD-rate, natural-log rate for BD-PSNR).
    """

    value: float | None
    reason: str | None = None
    interval: tuple[float, float] | None = None
    method: str = "pchip"

    def __bool__(self) -> bool:
        return self.value is not None


def _curve(rates: Sequence[float], psnrs: Sequence[float], name: str) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rates, dtype=np.float64).ravel()
    p = np.asarray(psnrs, dtype=np.float64).ravel()
    if r.shape != p.shape:
        raise InputError(f"{name} curve: {r.size} rates but {p.size} PSNR values")
    if not (np.isfinite(r).all() and np.isfinite(p).all()):
        raise InputError(f"{name} curve: rates and PSNR values must be finite")
    if (r <= 0).any():
        raise InputError(f"{name} curve: rates must be positive")
    return np.log(r), p


def _unique_sorted(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    ux, inverse = np.unique(x, return_inverse=True)
    uy = np.bincount(inverse, weights=y) / np.bincount(inverse)
    return ux, uy


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    if method == "cubic":
        poly = np.polyint(np.polyfit(x, y, 3))
        return float(np.polyval(poly, hi) - np.polyval(poly, lo))
    from scipy.interpolate import PchipInterpolator

    return float(PchipInterpolator(x, y).integrate(lo, hi))


def _bd(x_a: np.ndarray, y_a: np.ndarray, x_t: np.ndarray, y_t: np.ndarray, method: str, axis: str) -> BDResult:
    """Mean of ``y_t(x) - y_a(x)`` over the common ``x`` range."""
    if method not in METHODS:
        raise ConfigError(f"unknown Bjøntegaard method {method!r} (known: {', '.join(METHODS)})")
    need = 4 if method == "cubic" else 2
    x_a, y_a = _unique_sorted(x_a, y_a)
    x_t, y_t = _unique_sorted(x_t, y_t)
    for name, x in (("anchor", x_a), ("test", x_t)):
        if len(x) < need:
            return BDResult(None, f"the {name} curve has {len(x)} distinct {axis} values; {method} needs {need}",
                            method=method)
    lo, hi = max(x_a[0], x_t[0]), min(x_a[-1], x_t[-1])
    if not hi > lo:
        return BDResult(None, f"the curves do not overlap in {axis} "
                              f"(anchor {x_a[0]:.4g}..{x_a[-1]:.4g}, test {x_t[0]:.4g}..{x_t[-1]:.4g})",
                        method=method)
    diff = (_integral(x_t, y_t, lo, hi, method) - _integral(x_a, y_a, lo, hi, method)) / (hi - lo)
    return BDResult(diff, None, (float(lo), float(hi)), method)


def bd_rate(
    anchor_rates: Sequence[float], anchor_psnrs: Sequence[float],
    test_rates: Sequence[float], test_psnrs: Sequence[float],
    *, method: str = "pchip",
) -> BDResult:
    """Bjøntegaard delta rate of the test curve against the anchor, in percent."""
    lr_a, p_a = _curve(anchor_rates, anchor_psnrs, "anchor")
    lr_t, p_t = _curve(test_rates, test_psnrs, "test")
    result = _bd(p_a, lr_a, p_t, lr_t, method, "PSNR")
    if result.value is None:
        return result
    return BDResult(100.0 * math.expm1(result.value), None, result.interval, method)


def bd_psnr(
    anchor_rates: Sequence[float], anchor_psnrs: Sequence[float],
    test_rates: Sequence[float], test_psnrs: Sequence[float],
    *, method: str = "pchip",
) -> BDResult:
    """Bjøntegaard delta PSNR of the test curve against the anchor, in dB."""
    lr_a, p_a = _curve(anchor_rates, anchor_psnrs, "anchor")
    lr_t, p_t = _curve(test_rates, test_psnrs, "test")
    return _bd(lr_a, p_a, lr_t, p_t, method, "log-rate")


__all__ = ["BDResult", "METHODS", "bd_psnr", "bd_rate"]
