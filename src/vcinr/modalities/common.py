"""Helpers every modality reader and writer shares.

They exist so that all modalities fail the same way (a one-line :class:`InputError`, never a
raw library exception), normalise the same way (min/max into ``[0, 1]``) and write the same
way (to a temporary file that only replaces the target once it is complete).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image

from vcinr.errors import InputError, VcinrError, shown
from vcinr.limits import MAX_ARRAY_BYTES, MAX_INPUT_BYTES, check_input_path, open_regular
from vcinr.storage import atomic_path


def one_line(text: object) -> str:
    """Collapse a (library) message to a single line so the CLI can print it as is."""
    return " ".join(str(text).split())


@contextmanager
def reading(path: Path, what: str) -> Iterator[None]:
    """Turn any failure while decoding ``path`` into ``InputError("<path>: not a readable <what> ...")``.

    Third-party decoders (Pillow, libsndfile, FFmpeg, numpy) raise a zoo of exception types
    for corrupt or truncated files; the user only needs to know which file and why.  They
    open the path themselves, so it is checked first (:func:`vcinr.limits.check_input_path`:
    no FIFO that would block them, no symlink loop, no file beyond the input cap).  Their
    warnings would be extra lines on stderr: a decompression-bomb warning becomes the error,
    any other is silenced.
    """
    if not os.path.lexists(path):
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a {what} file")
    check_input_path(path, InputError)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except VcinrError:
        raise
    except MemoryError:
        raise InputError(f"{path}: too large to load into memory") from None
    except Exception as exc:  # noqa: BLE001 - every decoder failure is the file's fault
        raise InputError(f"{path}: not a readable {what} file ({one_line(exc) or type(exc).__name__})") from None


@contextmanager
def writing(path: Path, *, directory: bool = False) -> Iterator[Path]:
    """:func:`vcinr.storage.atomic_path` for the modality writers: a temporary path that replaces ``path``.

    A missing folder and any library error while writing (a failed encoder, a full disk)
    become a one-line :class:`InputError` naming ``path``, not the temporary file.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: the folder {path.parent} does not exist")
    try:
        with atomic_path(path, directory=directory) as tmp:
            yield tmp
    except VcinrError:
        raise
    except Exception as exc:  # noqa: BLE001 - a failed encoder or full disk is reported, not raised raw
        raise InputError(f"{path}: cannot write ({one_line(exc) or type(exc).__name__})") from None


def check_suffix(path: Path, suffixes: tuple[str, ...], what: str) -> None:
    """Refuse a file whose suffix does not belong to ``what`` (e.g. a ``.wav`` read as an image)."""
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise InputError(
            f"{path}: a '{suffix or '(no suffix)'}' file is not {what} data "
            f"(expected one of {', '.join(suffixes)})"
        )


def minmax_normalise(values: np.ndarray, path: Path | str) -> tuple[np.ndarray, float, float]:
    """Scale ``values`` into ``[0, 1]``; return the float32 result and the ``(min, max)`` used.

    Computed in float64 so that integer data with a range up to 2**16 survives the trip through
    float32 features exactly (see :func:`minmax_restore`).  A constant array maps to zeros.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise InputError(f"{path}: the array is empty")
    if not np.isfinite(data).all():
        raise InputError(f"{path}: contains NaN or infinite values")
    low, high = float(data.min()), float(data.max())
    span = high - low if high > low else 1.0
    return ((data - low) / span).astype(np.float32), low, high


def minmax_restore(features: np.ndarray, low: float, high: float, dtype: np.dtype | str) -> np.ndarray:
    """Invert :func:`minmax_normalise` and cast to ``dtype`` (integers rounded and clipped).

    A float result that does not fit ``dtype`` (``max`` 1e308 written as float32 is inf) is
    refused: a writer never produces a NaN or inf that the reader would then refuse.
    """
    dtype = np.dtype(dtype)
    span = high - low if high > low else 1.0
    with np.errstate(all="ignore"):  # overflow is checked below, not printed as a warning
        values = np.asarray(features, dtype=np.float64) * span + low
        if dtype == np.bool_:
            return values >= 0.5
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            return np.clip(np.rint(values), info.min, info.max).astype(dtype)
        restored = values.astype(dtype)
    if not np.isfinite(restored).all():
        raise InputError(f"signal meta range [{low:g}, {high:g}] does not fit dtype {dtype} (values would be inf)")
    return restored


# --- signal meta, as writers use it -------------------------------------------------------------
# A decoded signal's meta comes from the bitstream, which anyone can forge (docs/reliability.md):
# writers take every value they use through these, so a wrong type is one line, not a traceback,
# and a value that would silently become NaN, inf, an object array or a wrapped integer is refused.

MAX_META_NUMBER = 1e300  # beyond this even float64 arithmetic on the value may overflow


def meta_number(meta: dict, key: str, default: float | None = None) -> float:
    """``meta[key]`` as a finite float (``default`` when absent)."""
    value = meta.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) <= MAX_META_NUMBER:
        raise InputError(f"signal meta '{key}' must be a finite number, got {shown(value)}")
    return float(value)


def meta_int(meta: dict, key: str, low: int, high: int) -> int:
    """``meta[key]`` as an integer in ``low..high`` (e.g. the range of the dtype it is stored as)."""
    value = meta.get(key)
    if type(value) is not int or not low <= value <= high:
        raise InputError(f"signal meta '{key}' must be an integer in {low}..{high}, got {shown(value)}")
    return value


def meta_dtype(meta: dict, key: str, default: str) -> np.dtype:
    """``meta[key]`` as a real numeric or bool dtype; object, string and structured dtypes are refused."""
    value = meta.get(key, default)
    try:
        dtype = np.dtype(value) if isinstance(value, str) else None
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind not in "biuf" or dtype.fields is not None:
        raise InputError(f"signal meta '{key}' must name a numeric dtype such as '<f4', got {shown(value)}")
    return dtype


def meta_bool(meta: dict, key: str, default: bool) -> bool:
    value = meta.get(key, default)
    if type(value) is not bool:
        raise InputError(f"signal meta '{key}' must be true or false, got {shown(value)}")
    return value


def meta_numbers(meta: dict, key: str) -> np.ndarray | None:
    """``meta[key]`` as a 1-d float64 array of finite numbers, ``None`` when absent."""
    if key not in meta:
        return None
    value = meta[key]
    if (not isinstance(value, list)
            or not all(not isinstance(v, bool) and isinstance(v, (int, float)) and abs(v) <= MAX_META_NUMBER
                       for v in value)):
        raise InputError(f"signal meta '{key}' must be a list of finite numbers")
    return np.asarray(value, dtype=np.float64)


_CHUNK = 1 << 20  # elements converted at a time by to_uint8


def to_uint8(features: np.ndarray) -> np.ndarray:
    """``[0, 1]`` features → 8-bit samples: ``round(clip(f, 0, 1) * 255)`` (images, video).

    Computed in float64 (as it always was, so outputs stay byte-identical) but a chunk at a
    time, in place: a whole-grid float64 copy and its temporaries took ~2.4 GB at the
    decoder's size limit.
    """
    flat = np.ascontiguousarray(features).reshape(-1)
    out = np.empty(flat.shape, dtype=np.uint8)
    for start in range(0, flat.size, _CHUNK):
        chunk = flat[start : start + _CHUNK].astype(np.float64)
        np.clip(chunk, 0.0, 1.0, out=chunk)
        chunk *= 255.0
        np.rint(chunk, out=chunk)
        out[start : start + _CHUNK] = chunk
    return out.reshape(np.shape(features))


def _check_npy_header(stream: IO[bytes], path: Path, available: int) -> None:
    """Refuse an ``.npy`` stream whose header declares more than :data:`MAX_ARRAY_BYTES` or than it holds.

    numpy allocates the whole array from the header's shape before reading the data, so a
    few bytes claiming a huge shape would otherwise allocate it.
    """
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise InputError(f"{path}: unsupported .npy format version {version}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise InputError(f"{path}: an array of shape {shape} ({nbytes} bytes) is larger than vcinr reads "
                         f"({MAX_ARRAY_BYTES} bytes)")
    if nbytes > available - stream.tell():
        raise InputError(f"{path}: an array header claims {nbytes} bytes, more than the file holds")


def load_npy(path: Path) -> np.ndarray:
    """An ``.npy`` array, its header checked before numpy allocates it; never unpickled."""
    with open_regular(path, MAX_INPUT_BYTES, "array file", InputError) as f:
        _check_npy_header(f, path, os.fstat(f.fileno()).st_size)
        f.seek(0)
        return np.load(f, allow_pickle=False)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` without ever unpickling (object arrays are refused).

    The members' uncompressed sizes (from the zip directory, which bounds what ``zipfile``
    inflates) and every array header are checked before anything is decompressed: a 4 MB
    zip bomb used to be inflated to 8 GB before any limit applied.
    """
    with np.load(path, allow_pickle=False) as archive:
        members = archive.zip.infolist()
        total = sum(info.file_size for info in members)
        if total > MAX_ARRAY_BYTES:
            raise InputError(f"{path}: its arrays hold {total} bytes uncompressed, more than vcinr reads "
                             f"({MAX_ARRAY_BYTES} bytes)")
        for info in members:
            with archive.zip.open(info) as member:
                _check_npy_header(member, path, info.file_size)
        return {key: archive[key] for key in archive.files}
