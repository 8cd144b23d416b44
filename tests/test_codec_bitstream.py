"""The .vci container: header round trip, and every kind of damaged or foreign stream refused."""

import shutil
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from vcinr.codec import bitstream
from vcinr.codec.bitstream import Header, pack, unpack
from vcinr.errors import BitstreamError
from vcinr.meta.model import load_model, save_model
from vcinr.pipeline import compress_file, decode_bytes, decompress_file

FP_A, FP_B = "ab" * 32, "cd" * 32


def header(**changes):
    fields = dict(model_fingerprint=FP_A, codec_fingerprint=FP_B, kind="learned", modality="image", channels=3,
                  grid_shape=(40, 56), patch_shape=(16, 16), patch_count=12, symbols_per_patch=8,
                  meta={"mode": "RGB", "height": 40, "width": 56, "format": "PNG"})
    fields.update(changes)
    return Header(**fields)


def one_line_error(excinfo):
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


def test_header_round_trip():
    meta = {
        "latitude": [90.0 - 4 * i for i in range(46)],  # folded as a progression
        "irregular": [0.1, 0.2, 0.3, 0.4, 0.5],  # not exact in binary: kept as is
        "ints": list(range(0, 300, 7)),
        "numpy": np.float32(2.5),
        "nested": {"a": [1, 2.5, "x"], "b": None, "c": True},
        "unicode": "résumé",
    }
    h = header(meta=meta, grid_shape=(1, 2**31, 3), patch_shape=(1, 200, 3), patch_count=2**32 - 1,
               channels=70000, kind="uniform")
    data = pack(h, b"\x01\x02payload")
    parsed, payload = unpack(data)
    assert payload == b"\x01\x02payload"
    assert parsed.model_fingerprint == FP_A[:16] and parsed.codec_fingerprint == FP_B[:16]
    for name in ("kind", "modality", "channels", "grid_shape", "patch_shape", "patch_count", "symbols_per_patch"):
        assert getattr(parsed, name) == getattr(h, name), name
    expected = dict(meta, numpy=2.5)
    assert parsed.meta == expected
    assert parsed.meta["irregular"] == [0.1, 0.2, 0.3, 0.4, 0.5]
    # the progression costs a few bytes, not 46 numbers
    assert len(bitstream.encode_meta({"latitude": meta["latitude"]})) < 40


def test_container_overhead_is_small():
    data = pack(header(), b"")
    assert len(data) <= 56  # magic 6 B, fingerprints 16 B, CRC 4 B, the rest varints and ~13 B of meta


@pytest.mark.parametrize("bad", [b"", b"VC", b"PK\x03\x04" + bytes(60), b"\x89PNG\r\n\x1a\n" + bytes(60)])
def test_wrong_magic(bad):
    with pytest.raises(BitstreamError, match="not a vcinr bitstream") as excinfo:
        unpack(bad)
    one_line_error(excinfo)


def test_unknown_version_and_trailing_bytes():
    data = bytearray(pack(header(), b"xyz"))
    data[4] = bitstream.VERSION + 1
    with pytest.raises(BitstreamError, match=f"version {bitstream.VERSION + 1};"):
        unpack(bytes(data))
    data[4] = 1  # the CompressAI-coded format: refused in one line that says what to do
    with pytest.raises(BitstreamError, match="version 1 .*CompressAI.*158ec5c") as excinfo:
        unpack(bytes(data))
    one_line_error(excinfo)
    good = pack(header(), b"xyz")
    body = good[:-4] + b"extra"
    import struct
    import zlib

    with pytest.raises(BitstreamError, match="unexpected bytes"):
        unpack(body + struct.pack("<I", zlib.crc32(body)))


def test_every_flipped_byte_and_every_truncation_is_refused():
    data = pack(header(), bytes(range(40)))
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            damaged = bytearray(data)
            damaged[i] ^= bit
            with pytest.raises(BitstreamError) as excinfo:
                unpack(bytes(damaged))
            one_line_error(excinfo)
    for n in range(len(data)):
        with pytest.raises(BitstreamError) as excinfo:
            unpack(data[:n])
        message = one_line_error(excinfo)
        if n > 30:
            assert "truncated" in message or "corrupt" in message


def test_meta_bombs_are_refused():
    import zlib

    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = bomb.compress(b'{"a":"' + b"x" * (2 * bitstream.MAX_META) + b'"}') + bomb.flush()
    with pytest.raises(BitstreamError, match="too large"):
        bitstream.decode_meta(raw)
    assert bitstream.decode_meta(bitstream.encode_meta({"a": [0, 1, 2, 3]})) == {"a": [0, 1, 2, 3]}
    forged = {"\u0000arange": [0, 1, 10**9]}
    import json

    deflater = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, bitstream._META_DICTIONARY)
    raw = deflater.compress(json.dumps({"a": forged}).encode()) + deflater.flush()
    with pytest.raises(BitstreamError, match="more than"):
        bitstream.decode_meta(raw)


def deflated_meta(text: str) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, bitstream._META_DICTIONARY)
    return deflater.compress(text.encode()) + deflater.flush()


@pytest.mark.parametrize("text, message", [
    # issue 14: 33,000 folded ranges of a million elements each (1.3 TB expanded) from 2.6 KB
    ('{"a":[' + ",".join(['{"\\u0000arange":[0,1,1000000]}'] * 33_000) + "]}", "more than 1048576 elements"),
    ('{"a":' + "[" * 900 + "]" * 900 + "}", "nested deeper than"),
    ('{"a":' + "[" * 100_000 + "]" * 100_000 + "}", "nested deeper than"),
    ('{"a":' + "7" * 5000 + "}", "an integer of 5000 digits"),
    ('{"a":1e999}', "out of range"),
    ('{"a":NaN}', "NaN is not a number"),
    ('{"a":{"\\u0000arange":[1e307,1e307,1000]}}', "overflows"),
    ('{"a":{"\\u0000arange":[0,1,true]}}', "malformed"),
    ('{"a":{"\\u0000arange":[0,1,-1]}}', "malformed"),
    ('{"\\u0000arange":[0,1,3]}', "not a JSON object"),
])
def test_hostile_meta_is_refused_before_it_is_expanded(text, message):
    started = time.perf_counter()
    with pytest.raises(BitstreamError, match=message):
        bitstream.decode_meta(deflated_meta(text))
    assert time.perf_counter() - started < 5.0


def test_meta_within_the_budget_still_unfolds():
    meta = {"latitude": [float(i) for i in range(1000)], "nested": [{"x": [1, 2, 3, 4, 5]}]}
    assert bitstream.decode_meta(bitstream.encode_meta(meta)) == meta


def test_a_meta_bomb_behind_a_wrong_crc_is_not_expanded(tmp_path):
    """The CRC-mismatch path parses the header only to tell truncation from damage; it never decodes meta."""
    header = bitstream.Header("ab" * 32, "cd" * 32, "learned", "image", 3, (32, 32), (32, 32), 1, 8, {"a": 1})
    data = bytearray(bitstream.pack(header, b"\x00" * 16))
    bomb = deflated_meta('{"a":[' + ",".join(['{"\\u0000arange":[0,1,1000000]}'] * 2000) + "]}")
    old = bitstream.encode_meta({"a": 1})
    start = bytes(data).index(old) - 1
    forged = bytes(data[:start]) + bitstream._varint(len(bomb)) + bomb + bytes(data[start + 1 + len(old):])
    started = time.perf_counter()
    with pytest.raises(BitstreamError, match="CRC-32 mismatch"):
        bitstream.unpack(forged)
    body = forged[:-4]
    with pytest.raises(BitstreamError, match="more than 1048576 elements"):
        bitstream.unpack(body + struct.pack("<I", zlib.crc32(body)))
    assert time.perf_counter() - started < 2.0


# --- streams checked against a model ----------------------------------------------------------


@pytest.fixture(scope="module")
def cifar_stream(tiny_cifar_codecs, data_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream")
    image = np.load(data_dir / "cifar10" / "test.npz")["images"][3]
    Image.fromarray(image).save(folder / "in.png")
    compress_file(folder / "in.png", tiny_cifar_codecs, "2", folder / "in.vci")
    return folder / "in.vci"


def test_damaged_streams_fail_before_decoding_and_write_nothing(tiny_cifar_codecs, cifar_stream, tmp_path):
    loaded = load_model(tiny_cifar_codecs)
    data = cifar_stream.read_bytes()
    decode_bytes(data, loaded)  # the intact stream decodes
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x10
        with pytest.raises(BitstreamError) as excinfo:
            decode_bytes(bytes(damaged), loaded)
        one_line_error(excinfo)
    bad = tmp_path / "bad.vci"
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.png"
    with pytest.raises(BitstreamError, match="truncated"):
        decompress_file(bad, tiny_cifar_codecs, out)
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_stream_for_another_model_is_refused(tiny_cifar_codecs, cifar_stream, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_cifar_codecs, other)
    loaded = load_model(other)
    with torch.no_grad():
        loaded.model.state0.add_(1e-3)  # a retrained model: same shapes, other weights
    save_model(loaded.model, loaded.config, loaded.spec, other)
    out = tmp_path / "out.png"
    with pytest.raises(BitstreamError, match="made for another model") as excinfo:
        decompress_file(cifar_stream, other, out)
    one_line_error(excinfo)
    assert not out.exists()


def test_stream_for_a_refitted_quality_level_is_refused(tiny_cifar_codecs, cifar_stream, tmp_path):
    from vcinr.codec.fit import FitSettings, fit_codecs

    other = tmp_path / "other"
    shutil.copytree(tiny_cifar_codecs, other)
    # refit level "2" (lambda 1e-3) with other settings: its weights, and so its fingerprint, change
    fit_codecs(other, settings=FitSettings(lambdas=(1e-3,), bits=(), steps=5, lr=1e-2, batch_size=8, max_items=64),
               progress=False)
    out = tmp_path / "out.png"
    with pytest.raises(BitstreamError, match="codec .* does not have") as excinfo:
        decompress_file(cifar_stream, other, out)
    one_line_error(excinfo)
    assert not out.exists()


def test_headers_inconsistent_with_the_model_are_refused(tiny_cifar_codecs, cifar_stream):
    loaded = load_model(tiny_cifar_codecs)
    parsed, payload = unpack(cifar_stream.read_bytes())
    full = dict(parsed.__dict__, model_fingerprint=loaded.fingerprint)
    cases = {
        "grid": dict(grid_shape=(64, 64)),
        "patch shape": dict(patch_shape=(16, 16)),
        "patches": dict(patch_count=5),
        "symbols": dict(symbols_per_patch=parsed.symbols_per_patch + 1),
        "channels": dict(channels=1),
        "modality": dict(modality="audio"),
    }
    for what, change in cases.items():
        with pytest.raises(BitstreamError) as excinfo:
            decode_bytes(pack(Header(**{**full, **change}), payload), loaded)
        one_line_error(excinfo)
