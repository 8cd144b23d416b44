"""Generic N-d numeric arrays (``.npy``): the escape hatch for data without a dedicated reader.

Layout: an array of shape ``grid`` is one scalar field on that grid (``out_dim`` 1); there is
no channel axis, so a ``(H, W, 3)`` array is a 3-D grid.  Coordinates lie in ``[0, 1]^d``.
Features are min/max normalised into ``[0, 1]``; ``min``, ``max`` and ``dtype`` go to
``meta`` and the writer restores the original values and dtype (integers rounded).  The round
trip is exact for integer (and bool) arrays whose range is at most 2**16, and within float32
precision for float arrays.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from vcinr.errors import InputError
from vcinr.modalities.base import Modality
from vcinr.modalities.common import (
    check_suffix,
    load_npy,
    meta_dtype,
    meta_number,
    minmax_normalise,
    minmax_restore,
    reading,
    writing,
)
from vcinr.modalities.datasets import Batch, DataKind, Source, find_files, split_units
from vcinr.signal import Signal, grid_coordinates


def array_signal(values: np.ndarray, path: Path | str) -> Signal:
    """Normalise an in-memory array into an array :class:`Signal` (``path`` names it in errors)."""
    values = np.asarray(values)
    if values.ndim == 0:
        raise InputError(f"{path}: a scalar is not a signal; the array needs at least one axis")
    if values.dtype.kind not in "biuf":  # bool, signed, unsigned, float
        raise InputError(f"{path}: dtype {values.dtype} is not a real numeric type")
    features, low, high = minmax_normalise(values, path)
    meta = {"min": low, "max": high, "dtype": values.dtype.str}
    return Signal(torch.from_numpy(features[..., None]), grid_coordinates(values.shape, 0.0, 1.0), "array", meta)


def read_array(path: Path) -> Signal:
    path = Path(path)
    check_suffix(path, ArrayModality.suffixes, "array")
    with reading(path, "array"):
        values = load_npy(path)
    return array_signal(values, path)


def write_array(signal: Signal, path: Path) -> None:
    """De-normalise with ``meta`` min/max (default ``[0, 1]``) and save as ``.npy``."""
    path = Path(path)
    check_suffix(path, ArrayModality.write_suffixes, "array")
    if signal.out_dim != 1:
        raise InputError(f"an array signal has one feature channel, got {signal.out_dim}")
    meta = signal.meta
    features = signal.features[..., 0].detach().cpu().numpy()
    values = minmax_restore(features, meta_number(meta, "min", 0.0), meta_number(meta, "max", 1.0),
                            meta_dtype(meta, "dtype", "<f4"))
    with writing(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, values)


@functools.lru_cache(maxsize=1)
def _rows_file(path: Path) -> np.ndarray:
    with reading(path, "array"):
        values = np.load(path, mmap_mode="r", allow_pickle=False)
    if values.ndim < 2:
        raise InputError(f"{path}: a single array file needs a leading item axis, got shape {values.shape}")
    if 0 in values.shape[1:]:  # else the file's own bytes bound the rows, which become one unit each
        raise InputError(f"{path}: its items are empty (shape {values.shape})")
    return values


class ArraySet(DataKind):
    """A directory: one item per ``.npy``; a single ``.npy``: one item per leading-axis row."""

    name, modality = "array", "array"

    def units(self, source: Source, root: Path, split: str) -> list[tuple[Path, int | None]]:
        files = find_files(root, ArrayModality.suffixes, "array")
        if root.is_dir():
            return [(f, None) for f in split_units(files, source, split, "array files")]
        rows = len(_rows_file(files[0]))
        return split_units([(root, i) for i in range(rows)], source, split, "rows of the array")

    def load(self, source: Source, unit: tuple[Path, int | None], split: str, rng: np.random.Generator) -> Batch:
        path, row = unit
        if row is None:
            signal = read_array(path)
        else:
            signal = array_signal(np.asarray(_rows_file(path)[row]), f"{path}[{row}]")
        return Batch(signal.features[None], signal.coords)

    def forget(self) -> None:
        _rows_file.cache_clear()


class ArrayModality(Modality):
    name = "array"
    suffixes = (".npy",)
    write_suffixes = (".npy",)
    coord_range = (0.0, 1.0)
    loss = "mse"
    in_dim = None  # one coordinate per array axis

    def data_kinds(self) -> list[DataKind]:
        return [ArraySet()]

    def read(self, path: Path) -> Signal:
        return read_array(path)

    def write(self, signal: Signal, path: Path) -> None:
        write_array(signal, path)
