"""Hard limits on what vcinr reads, enforced *before* anything is allocated (issue 14).

Every file vcinr reads may be hostile (docs/reliability.md, "Threat model"), so a reader must
never let a file decide how much memory or time it gets.  This module holds the caps and the
three primitives every reader goes through:

* :func:`open_regular` / :func:`read_bounded` / :func:`sha256_bounded` — a file is opened
  without following a symlink loop into a traceback and without blocking on a FIFO, refused
  unless it is a regular file no larger than its cap, and read at most that far (a sparse
  12 GB file claiming to be a ``.vci`` costs nothing);
* :func:`parse_json` — JSON with bounded text, bounded integer digits (CPython's own limit
  gives a ``ValueError`` traceback at 4300 digits), no NaN/inf, and a bounded nesting depth
  and element count, checked iteratively (recursive walkers of hostile JSON end in
  ``RecursionError``);
* :func:`check_json_shape` — the same depth/element check for an already-built value.

The caps are generous for every real file and small against an 8 GB machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from vcinr.errors import VcinrError

MAX_COORDINATE = 1e6  # largest |coordinate| of a patch range a model may record (config and model JSON alike)
MAX_VCI_BYTES = 64 << 20  # a .vci at the decoder's limits (2^22 symbols) is far smaller
MAX_JSON_BYTES = 4 << 20  # config.json, codec JSON, YAML configs, checkpoint scalars
MAX_WEIGHTS_BYTES = 2 << 30  # model.safetensors, codec weights, checkpoints (paper-scale models are ~20 MB)
MAX_INPUT_BYTES = 2 << 30  # any file compressed or trained on
MAX_ARRAY_BYTES = 1 << 30  # the arrays of one .npy/.npz input once decompressed (a zip bomb's payload)
MAX_METRICS_BYTES = 1 << 30  # a run's metrics.jsonl: ~150 B a step, so millions of steps
MAX_JSON_DEPTH = 32  # real configs nest 3 deep, signal meta 2
MAX_JSON_ITEMS = 1 << 20  # list items + object members in one JSON value (after unfolding, for .vci meta)
MAX_INT_DIGITS = 20  # int64 needs 19; anything longer is not a size or a count vcinr uses
_CHUNK = 1 << 20


def open_regular(path: Path, limit: int, what: str, error: type[VcinrError]) -> BinaryIO:
    """``path`` opened for reading, refused (one line, ``error``) unless a regular file of at most ``limit`` bytes.

    ``O_NONBLOCK`` keeps ``open`` from waiting forever for a writer on a FIFO; it does not
    change reads of regular files.  A symlink loop surfaces as ``ELOOP`` here, not as a
    ``RuntimeError`` from ``Path.resolve``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise error(f"{path}: cannot open {what} ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: not a regular file (a {what} must be a file, not a FIFO, device or socket)")
        if info.st_size > limit:
            raise error(f"{path}: {info.st_size} bytes is larger than any {what} vcinr reads ({limit} bytes)")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: Path, limit: int, what: str, error: type[VcinrError]) -> bytes:
    """The bytes of ``path`` (see :func:`open_regular`); a file that grows past ``limit`` while read is refused."""
    with open_regular(path, limit, what, error) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise error(f"{path}: larger than any {what} vcinr reads ({limit} bytes)")
    return data


def sha256_bounded(path: Path, limit: int, what: str, error: type[VcinrError]) -> str:
    """Hex SHA-256 of ``path``, hashed in chunks (no whole-file copy), refused beyond ``limit`` bytes."""
    digest, total = hashlib.sha256(), 0
    with open_regular(path, limit, what, error) as f:
        while chunk := f.read(_CHUNK):
            total += len(chunk)
            if total > limit:
                raise error(f"{path}: larger than any {what} vcinr reads ({limit} bytes)")
            digest.update(chunk)
    return digest.hexdigest()


def check_input_path(path: Path, error: type[VcinrError], directory: bool = False) -> None:
    """Refuse an input that is a symlink loop, a FIFO/device/socket, or a file beyond :data:`MAX_INPUT_BYTES`.

    Readers of third-party formats (Pillow, libsndfile, FFmpeg) open paths themselves, so
    this checks what they will open first; ``directory`` allows a folder (scenes).
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode) and directory:
        return
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path}: is a directory, expected a file")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: not a regular file (a FIFO, device or socket cannot be compressed)")
    if info.st_size > MAX_INPUT_BYTES:
        raise error(f"{path}: {info.st_size} bytes is larger than any input vcinr reads ({MAX_INPUT_BYTES} bytes)")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"a number out of range ({text[:24]})")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a number")


def check_json_shape(value: Any, what: str, error: type[Exception], max_depth: int = MAX_JSON_DEPTH,
                     max_items: int = MAX_JSON_ITEMS) -> None:
    """Refuse ``value`` nested deeper than ``max_depth`` or holding more than ``max_items`` elements (iteratively)."""
    stack, items = [(value, 0)], 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = list(node.values())
        elif isinstance(node, (list, tuple)):
            children = list(node)
        else:
            continue
        if depth >= max_depth:
            raise error(f"{what}: nested deeper than {max_depth} levels")
        items += len(children)
        if items > max_items:
            raise error(f"{what}: more than {max_items} elements")
        stack.extend((child, depth + 1) for child in children)


def parse_json(text: str | bytes, what: str, error: type[Exception], max_depth: int = MAX_JSON_DEPTH,
               max_items: int = MAX_JSON_ITEMS) -> Any:
    """JSON text → value, every problem (syntax, encoding, numbers, depth, size) one ``error`` line."""
    if len(text) > MAX_JSON_BYTES:
        raise error(f"{what}: larger than {MAX_JSON_BYTES} bytes")
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        value = json.loads(text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise error(f"{what}: not valid JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise error(f"{what}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise error(f"{what}: nested deeper than {max_depth} levels") from None
    except ValueError as exc:
        raise error(f"{what}: not valid JSON ({exc})") from None
    check_json_shape(value, what, error, max_depth, max_items)
    return value


def read_json(path: Path, what: str, error: type[VcinrError]) -> Any:
    """:func:`parse_json` of a file read with :func:`read_bounded` (at most :data:`MAX_JSON_BYTES`)."""
    return parse_json(read_bounded(path, MAX_JSON_BYTES, what, error), f"{path}", error)


__all__ = ["MAX_ARRAY_BYTES", "MAX_INPUT_BYTES", "MAX_JSON_BYTES", "MAX_JSON_DEPTH", "MAX_JSON_ITEMS",
           "MAX_METRICS_BYTES", "MAX_VCI_BYTES", "MAX_WEIGHTS_BYTES", "check_input_path", "check_json_shape",
           "open_regular", "parse_json", "read_bounded", "read_json", "sha256_bounded"]
