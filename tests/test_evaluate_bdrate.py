"""Bjøntegaard deltas against values known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vcinr.errors import ConfigError, InputError
from vcinr.evaluate.bdrate import bd_psnr, bd_rate
from vcinr.evaluate.reference import load_reference_curves

RATES = [0.25, 0.5, 1.0, 2.0, 4.0]
PSNRS = [27.0, 30.1, 33.5, 36.2, 38.0]
METHODS = ["pchip", "cubic"]


@pytest.mark.parametrize("method", METHODS)
def test_curve_against_itself_is_zero(method):
    assert bd_rate(RATES, PSNRS, RATES, PSNRS, method=method).value == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(RATES, PSNRS, RATES, PSNRS, method=method).value == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_constant_rate_factor(method):
    test_rates = [0.9 * r for r in RATES]
    result = bd_rate(RATES, PSNRS, test_rates, PSNRS, method=method)
    assert result.value == pytest.approx(-10.0, abs=1e-9)
    assert result.interval == pytest.approx((min(PSNRS), max(PSNRS)))
    assert bd_rate(RATES, PSNRS, [2 * r for r in RATES], PSNRS, method=method).value == pytest.approx(100.0)
    # the anchor against the cheaper curve: +11.1 %
    assert bd_rate(test_rates, PSNRS, RATES, PSNRS, method=method).value == pytest.approx(100 / 9, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_constant_psnr_shift(method):
    shifted = [p + 1.0 for p in PSNRS]
    assert bd_psnr(RATES, PSNRS, RATES, shifted, method=method).value == pytest.approx(1.0, abs=1e-9)
    assert bd_psnr(RATES, shifted, RATES, PSNRS, method=method).value == pytest.approx(-1.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_log_linear_curves_in_closed_form(method):
    # PSNR = a + b ln R; the test curve is 1 dB better, so at equal PSNR it needs R·exp(-1/b).
    a, b = 30.0, 4.0
    rates = np.geomspace(0.1, 8, 7)
    anchor = a + b * np.log(rates)
    test_rates = np.geomspace(0.05, 4, 7)  # different sample positions
    test = a + 1.0 + b * np.log(test_rates)
    assert bd_rate(rates, anchor, test_rates, test, method=method).value == pytest.approx(
        100 * (math.exp(-1 / b) - 1), abs=1e-6)
    assert bd_psnr(rates, anchor, test_rates, test, method=method).value == pytest.approx(1.0, abs=1e-6)


def test_no_overlap_gives_none_with_reason():
    low = bd_rate([0.1, 0.2, 0.3, 0.4], [20, 21, 22, 23], [1, 2, 3, 4], [30, 31, 32, 33])
    assert low.value is None and not low
    assert "do not overlap" in low.reason
    assert bd_psnr([0.1, 0.2, 0.3, 0.4], [20, 21, 22, 23], [1, 2, 3, 4], [30, 31, 32, 33]).value is None


def test_too_few_points():
    r = bd_rate([1, 2, 3], [30, 31, 32], [1, 2, 3], [30, 31, 32], method="cubic")
    assert r.value is None and "needs 4" in r.reason
    assert bd_rate([1, 2, 3], [30, 31, 32], [1, 2, 3], [30, 31, 32]).value == pytest.approx(0.0)


def test_bad_curves_are_refused():
    with pytest.raises(InputError, match="positive"):
        bd_rate([0, 1, 2, 3], PSNRS[:4], RATES[:4], PSNRS[:4])
    with pytest.raises(InputError, match="rates but"):
        bd_rate(RATES, PSNRS[:3], RATES, PSNRS)
    with pytest.raises(ConfigError):
        bd_rate(RATES, PSNRS, RATES, PSNRS, method="linear")


def test_published_curve_with_duplicate_points():
    # The paper's CIFAR-10 curve lists (1.18, 28.86) twice and is not strictly monotone in rate.
    ref = load_reference_curves("cifar10")[0]
    assert bd_rate(ref.rate, ref.psnr, ref.rate, ref.psnr).value == pytest.approx(0.0, abs=1e-9)
    cheaper = [0.8 * r for r in ref.rate]
    assert bd_rate(ref.rate, ref.psnr, cheaper, ref.psnr).value == pytest.approx(-20.0, abs=1e-9)
