"""Writers refuse signal meta that is of the wrong type or would write NaN, inf, objects or wrapped integers.

A decoded signal's meta comes from the ``.vci`` file, which anyone can forge with a valid
CRC (docs/reliability.md), so every writer takes what it uses from the meta through the
checked accessors in :mod:`vcinr.modalities.common`.  Issue 14 found an all-NaN ERA5 field
written with exit 0, ``max`` 1e308 written as inf, a pickled object array in an ``.npz`` and
a source index that wrapped to 0; the other cases were tracebacks.
"""

import math

import numpy as np
import pytest
import torch

from vcinr.errors import InputError
from vcinr.modalities import write_signal
from vcinr.modalities.sphere import sphere_coords
from vcinr.signal import Signal, grid_coordinates

LAT, LON = np.linspace(-90.0, 90.0, 4), np.arange(8) * 45.0
ERA5 = {"layout": "era5", "min": 200.0, "max": 300.0, "source_index": 7,
        "latitude": LAT.tolist(), "longitude": LON.tolist()}
SIMPLE = {"layout": "simple", "min": -1.0, "max": 1.0, "dtype": "<f4", "stacked": False}


def sphere(meta: dict) -> Signal:
    return Signal(torch.full((4, 8, 1), 0.5), sphere_coords(LAT, LON), "sphere", meta)


def array(meta: dict) -> Signal:
    return Signal(torch.full((3, 5, 1), 0.5), grid_coordinates((3, 5), 0.0, 1.0), "array", meta)


def video(meta: dict) -> Signal:
    return Signal(torch.full((2, 4, 4, 3), 0.5), grid_coordinates((2, 4, 4), 0.0, 1.0), "video", meta)


CASES = {
    "era5 max 1e308": (sphere, ".npz", {**ERA5, "max": 1e308}, "'max' must be a finite number"),
    "era5 min NaN": (sphere, ".npz", {**ERA5, "min": math.nan}, "'min' must be a finite number"),
    "era5 max 1e100 (inf as float32)": (sphere, ".npz", {**ERA5, "max": 1e100}, "does not fit the float32"),
    "era5 min a string": (sphere, ".npz", {**ERA5, "min": "200"}, "'min' must be a finite number"),
    "era5 max a list": (sphere, ".npz", {**ERA5, "max": [300]}, "'max' must be a finite number"),
    "era5 source index beyond int32": (sphere, ".npz", {**ERA5, "source_index": 2**40}, "'source_index' must be"),
    "era5 source index a string": (sphere, ".npz", {**ERA5, "source_index": "7"}, "'source_index' must be"),
    "latitudes a dict": (sphere, ".npz", {**ERA5, "latitude": {"a": 1}}, "'latitude' must be a list"),
    "latitudes strings": (sphere, ".npz", {**ERA5, "latitude": ["0"] * 4}, "'latitude' must be a list"),
    "longitudes with inf": (sphere, ".npz", {**ERA5, "longitude": [math.inf] * 8}, "'longitude' must be a list"),
    "simple dtype object": (sphere, ".npz", {**SIMPLE, "dtype": "object"}, "'dtype' must name a numeric dtype"),
    "simple dtype not a dtype": (sphere, ".npz", {**SIMPLE, "dtype": "xyz"}, "'dtype' must name a numeric dtype"),
    "simple dtype a list": (sphere, ".npz", {**SIMPLE, "dtype": ["<f4"]}, "'dtype' must name a numeric dtype"),
    "simple dtype unicode": (sphere, ".npz", {**SIMPLE, "dtype": "<U4"}, "'dtype' must name a numeric dtype"),
    "simple max beyond float32": (sphere, ".npz", {**SIMPLE, "max": 1e300}, "does not fit dtype float32"),
    "simple stacked a string": (sphere, ".npz", {**SIMPLE, "stacked": "yes"}, "'stacked' must be true or false"),
    "array dtype object": (array, ".npy", {"min": 0.0, "max": 1.0, "dtype": "|O"}, "'dtype' must name"),
    "array min a string": (array, ".npy", {"min": "0", "max": 1.0, "dtype": "<f4"}, "'min' must be a finite"),
    "video fps a string": (video, ".mkv", {"fps": "fast"}, "'fps' must be a finite number"),
    "video fps huge": (video, ".mkv", {"fps": 1e300}, "'fps' must be in"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_writers_refuse_hostile_meta(case, tmp_path):
    make, suffix, meta, message = CASES[case]
    with pytest.raises(InputError, match=message) as info:
        write_signal(make(meta), tmp_path / f"out{suffix}")
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


@pytest.mark.parametrize("make, suffix, meta", [(sphere, ".npz", ERA5), (sphere, ".npz", SIMPLE),
                                                (array, ".npy", {"min": 0, "max": 255, "dtype": "|u1"}),
                                                (video, ".mkv", {"fps": 25.0})])
def test_writers_still_write_valid_meta(make, suffix, meta, tmp_path):
    write_signal(make(meta), tmp_path / f"out{suffix}")
    assert (tmp_path / f"out{suffix}").stat().st_size > 0
