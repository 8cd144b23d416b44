"""The ``.vci`` container: one file's latents, range-coded, plus all that is needed to decode.

Byte layout (little-endian; ``varint`` = unsigned LEB128, at most 5 bytes, < 2**32;
described with its rationale in ``docs/bitstream.md``)::

    field                       size
    magic b"VCI\\x1a"             4
    version (2)                 1    1: CompressAI's rANS payload (no longer read)
    codec kind                  1    0 learned, 1 uniform (informational)
    model fingerprint           8    first 8 bytes of the SHA-256 of model.safetensors
    codec fingerprint           8    first 8 bytes of the SHA-256 of the level's weights
    modality                    varint m (1..32), then m ASCII bytes
    grid rank d                 varint (1..8)
    channels                    varint (>= 1)
    grid shape                  d varints (>= 1)
    patch shape                 d varints (>= 1): the model's item shape
    patch count P               varint (>= 1)
    symbols per patch K         varint (>= 1)
    signal meta                 varint n, then n bytes: raw DEFLATE (preset dictionary) of
                                compact JSON, arithmetic progressions folded (see below)
    payload                     varint n, then n bytes: the P·K symbols in one range-coded stream
    CRC-32 (zlib)               4    of every byte before it

The fingerprints are truncated to 64 bits: they guard against decoding with the wrong
model or codec (2**-64 odds of a silent mix-up), not against forgery, and on a 32×32 image
every byte of container costs 0.008 bpp.

:func:`unpack` checks the magic, the version, the CRC and every length against the bytes
that are left before anything is decoded or allocated; consistency with a model
(fingerprints, shapes, counts) is checked by :func:`vcinr.pipeline.decode_bytes`.
"""

from __future__ import annotations

import json
import math
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from vcinr.errors import BitstreamError
from vcinr.limits import parse_json

MAGIC = b"VCI\x1a"
VERSION = 2  # 2: payload range-coded with constriction (1 was CompressAI's rANS)
KINDS = {"learned": 0, "uniform": 1}
FINGERPRINT_BYTES = 8
MAX_NDIM = 8
MAX_MODALITY = 32
MAX_META = 1 << 20  # bytes of inflated meta JSON
MAX_META_ELEMENTS = 1 << 20  # list items + object members of the meta, folded progressions expanded
_MODALITY_NAME = re.compile(r"[a-z][a-z0-9_]*")
MIN_SIZE = len(MAGIC) + 2 + 2 * FINGERPRINT_BYTES + 4  # magic, version, kind, fingerprints, CRC
_RANGE_KEY = "\u0000arange"  # marks a folded arithmetic progression: {key: [first, step, count]}
# Preset dictionary for the meta JSON: the keys and values the modality readers produce.
# Changing it changes the format (bump VERSION).
_META_DICTIONARY = (
    b'"source_index":"num_fields":"field_index":0,"layout":"era5","latitude":"longitude":'
    b'"min":"max":"dtype":"<f4","stacked":false,"threshold":"key":"voxels","translate":[0.0,0.0,0.0],'
    b'"scale":1.0,"fps":25.0,"codec":"h264","container":"mov,mp4,m4a,3gp,3j2,mj2","frames":'
    b'{"channels":1,"format":"FLAC","sample_rate":16000,"subtype":"PCM_16"}'
    b'{"format":"PNG","height":512,"mode":"RGB","source_mode":"RGB","width":768}'
)


@dataclass
class Header:
    """Everything in a ``.vci`` file except the payload."""

    model_fingerprint: str  # hex; the full SHA-256 may be given, only its prefix is stored
    codec_fingerprint: str
    kind: str
    modality: str
    channels: int
    grid_shape: tuple[int, ...]
    patch_shape: tuple[int, ...]
    patch_count: int
    symbols_per_patch: int
    meta: dict[str, Any] = field(default_factory=dict)


def fingerprint_prefix(fingerprint: str) -> str:
    """The part of a hex SHA-256 that a bitstream stores (16 hex digits)."""
    return fingerprint[: 2 * FINGERPRINT_BYTES].lower()


def _varint(value: int) -> bytes:
    if not 0 <= value < 1 << 32:
        raise ValueError(f"header value {value} out of range")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


# --- meta ---------------------------------------------------------------------------------------


def _fold(value: Any) -> Any:
    """Replace float/int lists that are exact arithmetic progressions by ``{_RANGE_KEY: [a, d, n]}``."""
    if isinstance(value, dict):
        return {k: _fold(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_fold(v) for v in value]
        if len(items) >= 4 and all(type(v) in (int, float) for v in items):
            first, step = items[0], items[1] - items[0]
            if all(type(v) is type(first) for v in items) and _unfold_range(first, step, len(items)) == items:
                return {_RANGE_KEY: [first, step, len(items)]}
        return items
    return value


def _unfold_range(first: Any, step: Any, count: int) -> list:
    return [first + i * step for i in range(count)]


def _range_spec(spec: Any) -> tuple[Any, Any, int]:
    """``[first, step, count]`` of a folded progression, refused unless well-typed and finite at both ends."""
    if (not isinstance(spec, list) or len(spec) != 3 or type(spec[2]) is not int or spec[2] < 0
            or any(type(v) not in (int, float) for v in spec[:2])):
        raise BitstreamError("corrupt bitstream: malformed signal meta")
    first, step, count = spec
    if count and not math.isfinite(first + (count - 1) * step):
        raise BitstreamError("corrupt bitstream: signal meta holds a progression that overflows")
    return first, step, count


def _unfold(meta: Any, budget: int = MAX_META_ELEMENTS) -> Any:
    """Expand folded progressions in place, iteratively, within a total element ``budget``.

    Each progression's length is charged to the budget *before* it is expanded and every
    list item or object member counts once, so a few bytes of meta that fold millions of
    elements (or nest hundreds deep) are refused without allocating them.
    """
    root = {"meta": meta}
    stack: list[tuple[Any, Any]] = [(root, "meta")]
    while stack:
        parent, key = stack.pop()
        value = parent[key]
        if isinstance(value, dict) and set(value) == {_RANGE_KEY}:
            first, step, count = _range_spec(value[_RANGE_KEY])
            budget -= count
            if budget < 0:
                break
            parent[key] = _unfold_range(first, step, count)
        elif isinstance(value, (dict, list)):
            budget -= len(value)
            if budget < 0:
                break
            stack.extend((value, k) for k in (value.keys() if isinstance(value, dict) else range(len(value))))
    if budget < 0:
        raise BitstreamError(f"corrupt bitstream: signal meta holds more than {MAX_META_ELEMENTS} elements")
    return root["meta"]


def _plain(value: Any) -> Any:
    """numpy scalars/arrays in meta → plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def encode_meta(meta: dict[str, Any]) -> bytes:
    """Compact, deterministic JSON (sorted keys), progressions folded, raw DEFLATE with a dictionary."""
    try:
        plain = json.loads(json.dumps(meta, allow_nan=False, default=_plain))
        text = json.dumps(_fold(plain), separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"signal meta is not JSON-serialisable ({exc})") from None
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, _META_DICTIONARY)
    return deflater.compress(text.encode("utf-8")) + deflater.flush()


def decode_meta(raw: bytes) -> dict[str, Any]:
    """Inverse of :func:`encode_meta`: inflated, parsed and unfolded, each step bounded."""
    try:
        inflater = zlib.decompressobj(-15, _META_DICTIONARY)
        text = inflater.decompress(raw, MAX_META)
    except zlib.error:
        raise BitstreamError("corrupt bitstream: unreadable signal meta") from None
    if inflater.unconsumed_tail or not inflater.eof or inflater.unused_data:
        raise BitstreamError("corrupt bitstream: signal meta is too large or incomplete")
    meta = _unfold(parse_json(text, "corrupt bitstream: signal meta", BitstreamError, max_items=MAX_META_ELEMENTS))
    if not isinstance(meta, dict):
        raise BitstreamError("corrupt bitstream: signal meta is not a JSON object")
    return meta


# --- container ----------------------------------------------------------------------------------


def _digest(hex_string: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(hex_string)
    except ValueError:
        raw = b""
    if len(raw) < FINGERPRINT_BYTES:
        raise ValueError(f"{what} must be a hex SHA-256, got {hex_string!r}")
    return raw[:FINGERPRINT_BYTES]


def pack(header: Header, payload: bytes) -> bytes:
    """Serialise header + payload and append the CRC-32."""
    modality = header.modality.encode("ascii")
    d = len(header.grid_shape)
    if (not _MODALITY_NAME.fullmatch(header.modality) or not 1 <= len(modality) <= MAX_MODALITY
            or not 1 <= d <= MAX_NDIM or len(header.patch_shape) != d):
        raise ValueError("header fields out of range")
    meta = encode_meta(header.meta)
    parts = [
        MAGIC, bytes([VERSION, KINDS[header.kind]]),
        _digest(header.model_fingerprint, "model fingerprint"), _digest(header.codec_fingerprint, "codec fingerprint"),
        _varint(len(modality)), modality, _varint(d), _varint(header.channels),
        *(_varint(n) for n in header.grid_shape), *(_varint(n) for n in header.patch_shape),
        _varint(header.patch_count), _varint(header.symbols_per_patch),
        _varint(len(meta)), meta, _varint(len(payload)), bytes(payload),
    ]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes, end: int):
        self.data, self.pos, self.end = data, 0, end

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > self.end:
            raise BitstreamError(f"truncated bitstream: {what} needs {n} bytes at offset {self.pos}, "
                                 f"only {max(self.end - self.pos, 0)} left")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self, what: str, low: int = 0, high: int = (1 << 32) - 1) -> int:
        value, shift = 0, 0
        for i in range(5):
            (byte,) = self.take(1, what)
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if i and byte == 0:
                    raise BitstreamError(f"corrupt bitstream header ({what}: over-long number)")
                break
        else:
            raise BitstreamError(f"corrupt bitstream header ({what}: number too long)")
        if not low <= value <= high:
            raise BitstreamError(f"corrupt bitstream header ({what} = {value}, expected {low}..{high})")
        return value


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
    if data[len(MAGIC)] != VERSION:
        old = (" (a CompressAI rANS payload: decode it with a vcinr from before format 2, e.g. commit 158ec5c)"
               if data[len(MAGIC)] == 1 else "")
        raise BitstreamError(f"unsupported bitstream version {data[len(MAGIC)]}{old}; "
                             f"this vcinr reads version {VERSION}")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        try:
            _parse(data, meta=False)  # only to tell truncation from damage: nothing is decoded
        except BitstreamError as exc:
            if str(exc).startswith("truncated"):
                raise
        raise BitstreamError("corrupt bitstream (CRC-32 mismatch): the file was damaged")
    return _parse(data)


def _parse(data: bytes, meta: bool = True) -> tuple[Header, bytes]:
    reader = _Reader(data, len(data) - 4)
    reader.take(len(MAGIC) + 1, "magic and version")
    (kind,) = reader.take(1, "codec kind")
    kinds = {v: k for k, v in KINDS.items()}
    if kind not in kinds:
        raise BitstreamError(f"corrupt bitstream header (unknown codec kind {kind})")
    model_fp = reader.take(FINGERPRINT_BYTES, "model fingerprint").hex()
    codec_fp = reader.take(FINGERPRINT_BYTES, "codec fingerprint").hex()
    m = reader.varint("modality length", 1, MAX_MODALITY)
    modality = reader.take(m, "modality name").decode("latin-1")
    if not _MODALITY_NAME.fullmatch(modality):  # it is echoed in messages: no control characters
        raise BitstreamError("corrupt bitstream header (modality name is not a lower-case ASCII identifier)")
    d = reader.varint("grid rank", 1, MAX_NDIM)
    channels = reader.varint("channels", 1)
    grid = tuple(reader.varint("grid shape", 1) for _ in range(d))
    patch = tuple(reader.varint("patch shape", 1) for _ in range(d))
    patch_count = reader.varint("patch count", 1)
    symbols = reader.varint("symbols per patch", 1)
    meta_bytes = reader.take(reader.varint("meta length"), "signal meta")
    payload = reader.take(reader.varint("payload length"), "payload")
    if reader.pos != reader.end:
        raise BitstreamError(f"corrupt bitstream: {reader.end - reader.pos} unexpected bytes after the payload")
    header = Header(model_fp, codec_fp, kinds[kind], modality, channels, grid, patch, patch_count, symbols,
                    decode_meta(meta_bytes) if meta else {})
    return header, payload


def short(fingerprint: str) -> str:
    """The stored fingerprint prefix, for messages."""
    return fingerprint_prefix(fingerprint)
