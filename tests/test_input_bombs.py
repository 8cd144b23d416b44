"""Inputs whose size is checked before they are decoded: small files that claim or expand to huge signals.

Issue 14: a 424 KB FLAC of silence decoded to 5.1 GB before the sample limit applied, a 4 MB
zip-bomb ``.npz`` was killed at 8 GB, a symlink loop was a traceback and a FIFO blocked
``compress`` forever; the training-set loaders (:mod:`vcinr.data`) read CIFAR-10 files whole
and trusted array headers.  Every case here must end in a one-line :class:`InputError` quickly.
"""

import os
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from vcinr.data import DataConfig, load_items
from vcinr.errors import InputError
from vcinr.modalities import common, get_modality, read_signal, scene, video, write_signal
from vcinr.signal import MAX_POINTS, Signal, grid_coordinates


def npy_claiming(shape: tuple[int, ...], data: bytes = b"\0" * 16) -> bytes:
    """An .npy file whose header declares ``shape`` (float32) in front of only ``data``."""
    header = repr({"descr": "<f4", "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def refused(path: Path, modality: str | None, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(InputError, match=message) as info:
        read_signal(path, modality)
    assert "\n" not in str(info.value)
    assert time.perf_counter() - started < 10.0


def test_a_small_flac_of_many_samples_is_refused_before_decoding(tmp_path):
    path = tmp_path / "silence.flac"
    with sf.SoundFile(path, "w", samplerate=8000, channels=1, subtype="PCM_16", format="FLAC") as f:
        for _ in range(MAX_POINTS // (1 << 20) + 1):
            f.write(np.zeros(1 << 20, dtype=np.int16))
    assert path.stat().st_size < 1 << 20  # ~100 KB holding 2^25 + 2^20 samples
    refused(path, None, "frames x 1 channels is more than vcinr reads")


def test_a_zip_bomb_npz_is_refused_before_inflating(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "MAX_ARRAY_BYTES", 1 << 20)  # the mechanism, at a size a test can build
    np.savez_compressed(tmp_path / "bomb.npz", data=np.zeros((1 << 20) + 1, dtype=np.uint8))
    assert (tmp_path / "bomb.npz").stat().st_size < 10_000
    refused(tmp_path / "bomb.npz", None, "uncompressed, more than vcinr reads")


@pytest.mark.parametrize("shape, message", [((1 << 40,), "larger than vcinr reads"),
                                            ((1000,), "more than the file holds")])
def test_npy_headers_claiming_more_than_they_hold_are_refused(shape, message, tmp_path):
    (tmp_path / "claim.npy").write_bytes(npy_claiming(shape))
    refused(tmp_path / "claim.npy", None, message)
    with zipfile.ZipFile(tmp_path / "claim.npz", "w") as archive:
        archive.writestr("data.npy", npy_claiming(shape))
    refused(tmp_path / "claim.npz", None, message)


def test_a_binvox_claiming_a_huge_grid_is_refused_before_expanding(tmp_path):
    (tmp_path / "big.binvox").write_bytes(b"#binvox 1\ndim 100000 100000 100000\ndata\n" + b"\x00\xff" * 8)
    refused(tmp_path / "big.binvox", "voxels", "is more than vcinr reads")


def test_a_long_video_is_refused_frame_by_frame(tmp_path, monkeypatch):
    clip = Signal(torch.rand(6, 16, 16, 3), grid_coordinates((6, 16, 16), 0.0, 1.0), "video", {"fps": 25.0})
    write_signal(clip, tmp_path / "clip.mkv")
    assert read_signal(tmp_path / "clip.mkv").grid_shape == (6, 16, 16)
    monkeypatch.setattr(video, "MAX_POINTS", 5 * 16 * 16)
    refused(tmp_path / "clip.mkv", None, "pixels in its frames, more than vcinr reads")
    monkeypatch.setattr(video, "MAX_POINTS", 16 * 16 - 1)  # a stream whose frame size alone is too large
    refused(tmp_path / "clip.mkv", None, "16x16 pixels per frame is more than vcinr reads")


def test_symlink_loops_and_fifos_are_refused_without_blocking(tmp_path):
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    refused(tmp_path / "loop.png", None, "Too many levels of symbolic links")
    os.mkfifo(tmp_path / "pipe.npy")  # opening it for reading would block until a writer comes
    refused(tmp_path / "pipe.npy", None, "not a regular file")


# --- training-set loaders (vcinr.data) ----------------------------------------------------------


def refused_by_loader(message: str, **section) -> None:
    started = time.perf_counter()
    with pytest.raises(InputError, match=message) as info:
        load_items(DataConfig(test_fraction=0.0, **section), "train")
    assert "\n" not in str(info.value)
    assert time.perf_counter() - started < 10.0


def test_a_sparse_cifar_batch_is_refused_without_reading_it(tmp_path):
    with open(tmp_path / "data_batch_1.bin", "wb") as f:
        f.truncate(12 << 30)  # np.fromfile allocated all 12 GB
    refused_by_loader("larger than any CIFAR-10 binary batch vcinr reads", kind="cifar10", path=str(tmp_path))


def test_a_zip_bomb_cifar_npz_is_refused_before_inflating(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "MAX_ARRAY_BYTES", 1 << 20)
    np.savez_compressed(tmp_path / "train.npz", images=np.zeros((342, 32, 32, 3), dtype=np.uint8))
    refused_by_loader("uncompressed, more than vcinr reads", kind="cifar10", path=str(tmp_path))


def test_an_array_of_empty_items_is_refused_before_listing_them(tmp_path):
    (tmp_path / "rows.npy").write_bytes(npy_claiming((10**12, 0), b""))  # 10^12 units from a 128-byte file
    refused_by_loader("its items are empty", kind="array", path=str(tmp_path / "rows.npy"))


def test_a_mesh_declaring_too_many_rows_is_refused(tmp_path):
    (tmp_path / "mesh.ply").write_text("ply\nformat ascii 1.0\nelement vertex 99999999999\nproperty float x\n"
                                       "end_header\n0\n")
    refused_by_loader("rows is more than vcinr reads", kind="voxels", path=str(tmp_path / "mesh.ply"))


def test_a_scene_of_too_many_pixels_is_refused_view_by_view(tmp_path, monkeypatch):
    poses = np.stack([scene.look_at(np.array([2.0, 0.5, 0.3 * i]), np.array([0.0, 0.0, 1.0])) for i in range(2)])
    meta = {"focal": 10.0, "cx": 4.0, "cy": 4.0, "height": 8, "width": 8, "poses": poses.reshape(2, 16).tolist()}
    write_signal(Signal(torch.rand(2, 8, 8, 3), scene.camera_rays(poses, 10.0, 4.0, 4.0, 8, 8), "scene", meta),
                 tmp_path / "scene")
    assert read_signal(tmp_path / "scene", "scene").grid_shape == (2, 8, 8)
    monkeypatch.setattr(scene, "MAX_POINTS", 2 * 8 * 8 - 1)
    refused(tmp_path / "scene", "scene", "pixels in its views, more than vcinr reads")


def test_an_image_npz_given_to_eval_is_read_like_any_input(tmp_path, monkeypatch):
    """``vcinr eval data.npz`` unpacks CIFAR-style archives: a zip bomb was inflated, floats were a traceback."""
    unpack = get_modality("image").unpack
    np.savez(tmp_path / "floats.npz", images=np.zeros((2, 4, 4, 3)))
    with pytest.raises(InputError, match="must hold a uint8 'images' array"):
        unpack(tmp_path / "floats.npz", tmp_path, None)
    np.savez_compressed(tmp_path / "bomb.npz", images=np.zeros((342, 32, 32, 3), dtype=np.uint8))
    assert len(unpack(tmp_path / "bomb.npz", tmp_path, 2)) == 2
    monkeypatch.setattr(common, "MAX_ARRAY_BYTES", 1 << 20)
    with pytest.raises(InputError, match="uncompressed, more than vcinr reads") as info:
        unpack(tmp_path / "bomb.npz", tmp_path, 2)
    assert "\n" not in str(info.value)
