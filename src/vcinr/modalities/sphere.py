"""Fields on the sphere (ERA5 temperature): a latitude × longitude grid of scalars.

Coordinates follow paper appendix A: every grid point ``(lat, lon)`` becomes the 3-D point
``(cos lat cos lon, cos lat sin lon, sin lat)`` on the unit sphere, so the INR sees no seam at
the date line and no singular poles.  ``latitude``/``longitude`` arrays in the file are in
degrees (CF convention); without them latitudes are equally spaced in ``[-90°, 90°]`` and
longitudes in ``[0°, 360°(n-1)/n]``.  The grid is not regular in these coordinates, hence
``coord_range = None``: sphere signals are fitted whole, never patched.

Accepted ``.npz`` layouts (a file may hold ``N`` fields; :func:`read_sphere` picks one):

* ERA5 samples (``shared/data/era5/samples.npz``): ``temperature_normalized`` ``(N, lat, lon)``
  in ``[0, 1]``, ``t_min``, ``t_max``, optional ``temperature_kelvin``, ``latitude``,
  ``longitude``, ``source_index``.  Features are ``temperature_normalized`` itself (as COIN++
  uses it), so an ERA5 round trip is exact.
* simple: ``data`` ``(lat, lon)`` or ``(N, lat, lon)``, optional ``latitude``, ``longitude``.
  Features are min/max normalised over the whole array; writing de-normalises and casts to
  the original dtype, exact up to float32 rounding of the normalisation.

``.nc`` files are read through xarray when it is installed (first variable with latitude and
longitude dimensions).  Written files always use the layout that was read (``.nc`` → simple).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vcinr.errors import InputError
from vcinr.limits import MAX_ARRAY_BYTES
from vcinr.modalities.base import Modality
from vcinr.modalities.common import (
    check_suffix,
    load_npz,
    meta_bool,
    meta_dtype,
    meta_int,
    meta_number,
    meta_numbers,
    minmax_normalise,
    minmax_restore,
    reading,
    writing,
)
from vcinr.modalities.datasets import Batch, DataKind, Source, find_files, split_units
from vcinr.signal import Signal

_LAT_NAMES = ("latitude", "lat")
_LON_NAMES = ("longitude", "lon")


@dataclass
class SphereFields:
    """All fields of one file, normalised, with what is needed to write them back."""

    values: np.ndarray  # (N, lat, lon) float32 in [0, 1]
    latitude: np.ndarray  # (lat,) degrees
    longitude: np.ndarray  # (lon,) degrees
    meta: dict  # layout, min, max, dtype, ... shared by all fields


def sphere_coords(latitude: np.ndarray, longitude: np.ndarray) -> torch.Tensor:
    """Unit-sphere Cartesian coordinates ``(lat, lon, 3)`` of a latitude × longitude grid (degrees)."""
    lat = np.deg2rad(np.asarray(latitude, dtype=np.float64))[:, None]
    lon = np.deg2rad(np.asarray(longitude, dtype=np.float64))[None, :]
    xyz = np.stack(np.broadcast_arrays(np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)), -1)
    return torch.from_numpy(xyz.astype(np.float32))


def _axes(path: Path, arrays: dict, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Latitude/longitude from the file, or the paper's equal spacing when absent."""
    n_lat, n_lon = shape
    lat = next((arrays[k] for k in _LAT_NAMES if k in arrays), np.linspace(-90.0, 90.0, n_lat))
    lon = next((arrays[k] for k in _LON_NAMES if k in arrays), np.arange(n_lon) * (360.0 / n_lon))
    lat, lon = np.asarray(lat, dtype=np.float64).ravel(), np.asarray(lon, dtype=np.float64).ravel()
    if lat.shape != (n_lat,) or lon.shape != (n_lon,):
        raise InputError(f"{path}: latitude/longitude lengths {len(lat)}/{len(lon)} do not match the grid {shape}")
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()) or np.abs(lat).max() > 90.0:
        raise InputError(f"{path}: latitude must be finite degrees in [-90, 90]")
    return lat, lon


def _as_fields(path: Path, data: np.ndarray, name: str) -> np.ndarray:
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3 or 0 in data.shape or not np.issubdtype(data.dtype, np.number):
        raise InputError(f"{path}: '{name}' must be a numeric (lat, lon) or (N, lat, lon) array, got {data.shape}")
    return data


def _from_arrays(path: Path, arrays: dict[str, np.ndarray]) -> SphereFields:
    if "temperature_normalized" in arrays:
        if "t_min" not in arrays or "t_max" not in arrays:
            raise InputError(f"{path}: ERA5 layout needs t_min and t_max next to temperature_normalized")
        values = _as_fields(path, arrays["temperature_normalized"], "temperature_normalized").astype(np.float32)
        if not np.isfinite(values).all():
            raise InputError(f"{path}: contains NaN or infinite values")
        meta = {"layout": "era5", "min": float(arrays["t_min"]), "max": float(arrays["t_max"])}
        if "source_index" in arrays:
            meta["source_index"] = [int(i) for i in np.asarray(arrays["source_index"]).ravel()]
    elif "data" in arrays:
        data = _as_fields(path, arrays["data"], "data")
        values, low, high = minmax_normalise(data, path)
        stacked = np.ndim(arrays["data"]) == 3
        meta = {"layout": "simple", "min": low, "max": high, "dtype": data.dtype.str, "stacked": stacked}
    else:
        raise InputError(
            f"{path}: no 'temperature_normalized' or 'data' array (found: {', '.join(arrays) or 'none'}); "
            "for occupancy grids or generic arrays name the voxels or array modality"
        )
    lat, lon = _axes(path, arrays, values.shape[1:])
    return SphereFields(values, lat, lon, meta)


def _netcdf_arrays(path: Path) -> dict[str, np.ndarray]:
    """The first lat/lon variable of a NetCDF file as a 'simple' layout (needs xarray)."""
    try:
        import xarray
    except ImportError:
        raise InputError(f"{path}: reading NetCDF needs xarray (pip install xarray netCDF4)") from None
    with xarray.open_dataset(path) as ds:
        for var in ds.data_vars.values():
            dims = var.dims
            if len(dims) in (2, 3) and dims[-2] in _LAT_NAMES and dims[-1] in _LON_NAMES:
                if var.size * var.dtype.itemsize > MAX_ARRAY_BYTES:  # before a compressed variable is inflated
                    raise InputError(f"{path}: variable {var.name!r} of shape {var.shape} is larger than vcinr reads "
                                     f"({MAX_ARRAY_BYTES} bytes)")
                return {"data": var.values, "latitude": ds[dims[-2]].values, "longitude": ds[dims[-1]].values}
    raise InputError(f"{path}: no variable with (latitude, longitude) dimensions")


def load_sphere(path: Path) -> SphereFields:
    """Read every field of a sphere file (used by the data loader, which takes all of them)."""
    path = Path(path)
    check_suffix(path, SphereModality.suffixes, "sphere")
    with reading(path, "sphere"):
        arrays = _netcdf_arrays(path) if path.suffix.lower() == ".nc" else load_npz(path)
        return _from_arrays(path, arrays)


def read_sphere(path: Path, index: int = 0) -> Signal:
    """Field ``index`` of ``path`` as a :class:`Signal` of shape ``(lat, lon, 1)``."""
    fields = load_sphere(path)
    count = len(fields.values)
    if not -count <= index < count:
        raise InputError(f"{path}: field index {index} out of range (the file holds {count} fields)")
    index %= count
    meta = dict(fields.meta, field_index=index, num_fields=count)
    meta["latitude"], meta["longitude"] = fields.latitude.tolist(), fields.longitude.tolist()
    if "source_index" in meta:
        meta["source_index"] = meta["source_index"][index]
    features = torch.from_numpy(fields.values[index][..., None])
    return Signal(features, sphere_coords(fields.latitude, fields.longitude), "sphere", meta)


def write_sphere(signal: Signal, path: Path) -> None:
    """Write one field in the layout it was read from, de-normalised (not clipped: physical data)."""
    path = Path(path)
    check_suffix(path, SphereModality.write_suffixes, "sphere")
    meta = signal.meta
    if signal.features.ndim != 3 or signal.out_dim != 1:
        raise InputError(f"a sphere field needs features of shape (lat, lon, 1), got {tuple(signal.features.shape)}")
    if "min" not in meta or "max" not in meta:
        raise InputError("cannot write a sphere field without meta['min'] and meta['max']")
    field = signal.features.detach().cpu().numpy()[None, ..., 0].astype(np.float32)
    axes = {k: values for k in ("latitude", "longitude") if (values := meta_numbers(meta, k)) is not None}
    lat, lon = _axes(path, axes, field.shape[1:])
    arrays = {"latitude": lat.astype(np.float32), "longitude": lon.astype(np.float32)}
    if meta.get("layout") == "era5":
        low, high = meta_number(meta, "min"), meta_number(meta, "max")
        with np.errstate(all="ignore"):  # overflow is checked below, not printed as a warning
            t_min, t_max = np.float32(low), np.float32(high)
            kelvin = (field * (t_max - t_min) + t_min).astype(np.float32)  # float32, as always: same bytes
        if not (np.isfinite(t_min) and np.isfinite(t_max) and np.isfinite(kelvin).all()):
            raise InputError(f"signal meta range [{low:g}, {high:g}] does not fit the float32 ERA5 layout")
        arrays.update(temperature_normalized=field, temperature_kelvin=kelvin, t_min=t_min, t_max=t_max)
        if "source_index" in meta:
            index = meta_int(meta, "source_index", np.iinfo(np.int32).min, np.iinfo(np.int32).max)
            arrays["source_index"] = np.array([index], dtype=np.int32)
    else:
        data = minmax_restore(field, meta_number(meta, "min"), meta_number(meta, "max"),
                              meta_dtype(meta, "dtype", "<f4"))
        arrays["data"] = data if meta_bool(meta, "stacked", True) else data[0]
    with writing(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


@functools.lru_cache(maxsize=1)
def _cached_fields(path: Path) -> SphereFields:  # consecutive units share a file: load it once
    return load_sphere(path)


class SphereFieldSet(DataKind):
    """Every field of the sphere files below ``path`` (an ERA5 file holds many), split by (file, field)."""

    name, modality = "sphere", "sphere"

    def units(self, source: Source, root: Path, split: str) -> list[tuple[Path, int]]:
        files = find_files(root, SphereModality.suffixes, "sphere")
        fields = [(f, i) for f in files for i in range(len(_cached_fields(f).values))]
        return split_units(fields, source, split, "fields")

    def load(self, source: Source, unit: tuple[Path, int], split: str, rng: np.random.Generator) -> Batch:
        fields = _cached_fields(unit[0])
        values = torch.from_numpy(fields.values[unit[1]][None, ..., None])
        return Batch(values, sphere_coords(fields.latitude, fields.longitude))

    def forget(self) -> None:
        _cached_fields.cache_clear()


class SphereModality(Modality):
    name = "sphere"
    suffixes = (".npz", ".nc")
    write_suffixes = (".npz",)
    coord_range = None
    loss = "mse"
    in_dim = 3
    codecs = ("jpeg", "jpeg2000", "webp", "avif")  # unrolled onto the rectangular grid, as in the paper
    strong_codecs = ("webp", "avif")

    def data_kinds(self) -> list[DataKind]:
        return [SphereFieldSet()]

    def read(self, path: Path) -> Signal:
        return read_sphere(path)

    def write(self, signal: Signal, path: Path) -> None:
        write_sphere(signal, path)

    def unpack(self, path: Path, folder: Path, limit: int | None) -> list[Path] | None:
        """An ``.npz`` of several fields becomes one file per field."""
        if path.suffix.lower() != ".npz":
            return None
        count = len(load_sphere(path).values)
        files = []
        for i in range(min(count, limit or count)):
            out = folder / f"{path.stem}_{i:03d}.npz"
            write_sphere(read_sphere(path, index=i), out)
            files.append(out)
        return files
