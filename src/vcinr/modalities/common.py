"""Helpers every modality reader and writer shares.

They exist so that all modalities fail the same way (a one-line :class:`InputError`, never a
raw library exception), normalise the same way (min/max into ``[0, 1]``) and write the same
way (to a temporary file that only replaces the target once it is complete).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from vcinr.errors import InputError, VcinrError


def one_line(text: object) -> str:
    """Collapse a (library) message to a single line so the CLI can print it as is."""
    return " ".join(str(text).split())


@contextmanager
def reading(path: Path, what: str) -> Iterator[None]:
    """Turn any failure while decoding ``path`` into ``InputError("<path>: not a readable <what> ...")``.

    Third-party decoders (Pillow, libsndfile, FFmpeg, numpy) raise a zoo of exception types
    for corrupt or truncated files; the user only needs to know which file and why.
    """
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a {what} file")
    try:
        yield
    except VcinrError:
        raise
    except MemoryError:
        raise InputError(f"{path}: too large to load into memory") from None
    except Exception as exc:  # noqa: BLE001 - every decoder failure is the file's fault
        raise InputError(f"{path}: not a readable {what} file ({one_line(exc) or type(exc).__name__})") from None


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix, so libraries pick the same format).

    The temporary file replaces ``path`` only when the ``with`` block succeeds; on any error it
    is removed, so a failed write never leaves a partial or clobbered file behind.  Library
    errors while writing are reported as one-line :class:`InputError`.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: the folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except VcinrError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:  # noqa: BLE001 - a failed encoder or full disk is reported, not raised raw
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({one_line(exc) or type(exc).__name__})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    """Invert :func:`minmax_normalise` and cast to ``dtype`` (integers rounded and clipped)."""
    dtype = np.dtype(dtype)
    span = high - low if high > low else 1.0
    values = np.asarray(features, dtype=np.float64) * span + low
    if dtype == np.bool_:
        return values >= 0.5
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def to_uint8(features: np.ndarray) -> np.ndarray:
    """``[0, 1]`` features → 8-bit samples: ``round(clip(f, 0, 1) * 255)`` (images, video)."""
    return np.rint(np.clip(np.asarray(features, dtype=np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` without ever unpickling (object arrays are refused)."""
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}
