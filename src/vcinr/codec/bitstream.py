"""The ``.vci`` container: one file's latents, range-coded, plus all that is needed to decode.

Byte layout (little-endian; documented with rationale in ``docs/bitstream.md``)::

    offset  size  field
    0       4     magic  b"VCI\\x1a"
    4       1     version (1)
    5       1     codec kind (0 learned, 1 uniform; informational)
    6       2     flags (0; reserved)
    8       32    SHA-256 of the model weights (LoadedModel.fingerprint)
    40      32    SHA-256 of the quality level's codec weights
    72      1     m = length of the modality name (1..32)
    73      m     modality name (ASCII)
    .       1     d = number of grid axes (1..8)
    .       2     channels (1..65535)
    .       4·d   grid shape (u32 each, >= 1)
    .       4·d   patch shape (u32 each, >= 1; the model's item shape)
    .       4     patch count P (u32)
    .       2     symbols per patch K (u16)
    .       4     n_meta; then n_meta bytes: zlib-compressed compact JSON of Signal.meta
    .       4     n_payload; then n_payload bytes: the P·K symbols, rANS-coded in one stream
    end-4   4     CRC-32 (zlib) of every byte before it

:func:`unpack` checks the magic, version, every length against the bytes that are left,
and the CRC before anything is decoded or allocated; consistency with the model (fingerprints,
shapes, counts) is checked by the pipeline, which knows the model.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from vcinr.errors import BitstreamError

MAGIC = b"VCI\x1a"
VERSION = 1
KINDS = {"learned": 0, "uniform": 1}
MAX_NDIM = 8
MAX_MODALITY = 32
MAX_META = 1 << 20  # bytes of decompressed meta JSON
_FIXED = struct.Struct("<4sBBH32s32s")
MIN_SIZE = _FIXED.size + 1 + 1 + 1 + 2 + 4 + 2 + 4 + 4 + 4  # empty modality/grid: a floor, not a file


@dataclass
class Header:
    """Everything in a ``.vci`` file except the payload."""

    model_fingerprint: str  # hex SHA-256
    codec_fingerprint: str  # hex SHA-256
    kind: str
    modality: str
    channels: int
    grid_shape: tuple[int, ...]
    patch_shape: tuple[int, ...]
    patch_count: int
    symbols_per_patch: int
    meta: dict[str, Any] = field(default_factory=dict)


def _digest(hex_string: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(hex_string)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{what} must be a hex SHA-256, got {hex_string!r}")
    return raw


def encode_meta(meta: dict[str, Any]) -> bytes:
    """Compact, deterministic JSON (sorted keys), zlib-compressed."""
    try:
        text = json.dumps(meta, separators=(",", ":"), sort_keys=True, allow_nan=False, default=_plain)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"signal meta is not JSON-serialisable ({exc})") from None
    return zlib.compress(text.encode("utf-8"), 9)


def _plain(value: Any) -> Any:
    """numpy scalars/arrays and tuples in meta → plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def pack(header: Header, payload: bytes) -> bytes:
    """Serialise header + payload and append the CRC-32."""
    modality = header.modality.encode("ascii")
    d = len(header.grid_shape)
    if not 1 <= len(modality) <= MAX_MODALITY or not 1 <= d <= MAX_NDIM or len(header.patch_shape) != d:
        raise ValueError("header fields out of range")
    meta = encode_meta(header.meta)
    parts = [
        _FIXED.pack(MAGIC, VERSION, KINDS[header.kind], 0,
                    _digest(header.model_fingerprint, "model fingerprint"),
                    _digest(header.codec_fingerprint, "codec fingerprint")),
        struct.pack("<B", len(modality)), modality,
        struct.pack("<BH", d, header.channels),
        struct.pack(f"<{d}I", *header.grid_shape),
        struct.pack(f"<{d}I", *header.patch_shape),
        struct.pack("<IH", header.patch_count, header.symbols_per_patch),
        struct.pack("<I", len(meta)), meta,
        struct.pack("<I", len(payload)), payload,
    ]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes, end: int):
        self.data, self.pos, self.end = data, 0, end

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise BitstreamError(f"truncated bitstream: {what} needs {n} bytes at offset {self.pos}, "
                                 f"only {max(self.end - self.pos, 0)} left")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        s = struct.Struct("<" + fmt)
        return s.unpack(self.take(s.size, what))


def unpack(data: bytes) -> tuple[Header, bytes]:
    """Parse and validate a ``.vci`` file; every problem is a one-line :class:`BitstreamError`.

    A file whose CRC does not match is reported as truncated when its length fields point
    past its end, and as corrupt otherwise.
    """
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not a vcinr bitstream (bad magic bytes)")
    if len(data) < MIN_SIZE:
        raise BitstreamError(f"truncated bitstream: {len(data)} bytes is shorter than any .vci header")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        try:
            _parse(data)
        except BitstreamError as exc:
            if str(exc).startswith("truncated"):
                raise
        raise BitstreamError("corrupt bitstream (CRC-32 mismatch): the file was damaged")
    return _parse(data)


def _parse(data: bytes) -> tuple[Header, bytes]:
    reader = _Reader(data, len(data) - 4)
    magic, version, kind, flags, model_fp, codec_fp = reader.unpack("4sBBH32s32s", "fixed header")
    if version != VERSION:
        raise BitstreamError(f"unsupported bitstream version {version} (this vcinr reads version {VERSION})")
    kinds = {v: k for k, v in KINDS.items()}
    if kind not in kinds or flags != 0:
        raise BitstreamError("corrupt bitstream header (unknown codec kind or flags)")
    (m,) = reader.unpack("B", "modality length")
    if not 1 <= m <= MAX_MODALITY:
        raise BitstreamError(f"corrupt bitstream header (modality name of {m} bytes)")
    try:
        modality = reader.take(m, "modality name").decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError("corrupt bitstream header (modality name is not ASCII)") from None
    d, channels = reader.unpack("BH", "grid rank and channels")
    if not 1 <= d <= MAX_NDIM or channels < 1:
        raise BitstreamError(f"corrupt bitstream header ({d} grid axes, {channels} channels)")
    grid = reader.unpack(f"{d}I", "grid shape")
    patch = reader.unpack(f"{d}I", "patch shape")
    if min(grid) < 1 or min(patch) < 1:
        raise BitstreamError("corrupt bitstream header (a zero-length grid or patch axis)")
    patch_count, symbols = reader.unpack("IH", "patch count")
    if patch_count < 1 or symbols < 1:
        raise BitstreamError("corrupt bitstream header (no patches or no symbols)")
    (n_meta,) = reader.unpack("I", "meta length")
    meta_bytes = reader.take(n_meta, "signal meta")
    (n_payload,) = reader.unpack("I", "payload length")
    payload = reader.take(n_payload, "payload")
    if reader.pos != reader.end:
        raise BitstreamError(f"corrupt bitstream: {reader.end - reader.pos} unexpected bytes after the payload")
    header = Header(model_fp.hex(), codec_fp.hex(), kinds[kind], modality, channels, grid, patch,
                    patch_count, symbols, _decode_meta(meta_bytes))
    return header, payload


def _decode_meta(raw: bytes) -> dict[str, Any]:
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(raw, MAX_META)
        if inflater.unconsumed_tail or not inflater.eof:
            raise BitstreamError("corrupt bitstream: signal meta is too large or incomplete")
        meta = json.loads(text.decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError):
        raise BitstreamError("corrupt bitstream: unreadable signal meta") from None
    if not isinstance(meta, dict):
        raise BitstreamError("corrupt bitstream: signal meta is not a JSON object")
    return meta


def short(fingerprint: str) -> str:
    """First 12 hex digits, for messages."""
    return fingerprint[:12]

