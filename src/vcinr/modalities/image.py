"""Images: any 8-bit Pillow format, RGB or grayscale (paper appendix A, CelebA/CIFAR/Kodak).

Conventions: grid axes ``(H, W)``; coordinates in ``[0, 1]^2``; features ``uint8 / 255`` in
``[0, 1]`` with ``out_dim`` 3 (RGB) or 1 (grayscale).

Pillow modes: ``RGB`` and ``L`` are kept.  Bilevel ``1`` and ``LA`` become ``L``; palette
``P``, ``RGBA``, ``CMYK``, ``YCbCr``, ``LAB`` and ``HSV`` become ``RGB`` (alpha is dropped).
High-bit-depth modes (``I;16``, ``I``, ``F``) are refused rather than silently quantised to
8 bits.  The mode that was read is kept in ``meta["source_mode"]``; the writer always writes
``L`` or ``RGB`` (from ``out_dim``), which makes an 8-bit PNG round trip bit-exact.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from PIL import Image

from vcinr.errors import ConfigError, InputError
from vcinr.limits import MAX_ARRAY_BYTES, read_bounded
from vcinr.modalities.base import FileKind, Modality
from vcinr.modalities.common import check_suffix, load_npz, reading, to_uint8, writing
from vcinr.modalities.datasets import Batch, DataKind, Source, check_counts
from vcinr.signal import MAX_POINTS, Signal, grid_coordinates

_TO_GRAY = ("L", "1", "LA")
_TO_RGB = ("RGB", "P", "PA", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV")
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".tga")


def read_image(path: Path) -> Signal:
    """Decode ``path`` (first frame of multi-frame files) into an image :class:`Signal`."""
    path = Path(path)
    check_suffix(path, SUFFIXES, "image")
    with reading(path, "image"), Image.open(path) as img:
        if img.width * img.height > MAX_POINTS:  # before decoding: a small file may claim a huge image
            raise InputError(f"{path}: {img.width}x{img.height} pixels is more than vcinr reads ({MAX_POINTS})")
        img.load()
        source_mode, source_format = img.mode, img.format
        if img.mode in _TO_GRAY:
            img = img.convert("L")
        elif img.mode in _TO_RGB:
            img = img.convert("RGB")
        else:
            raise InputError(
                f"{path}: image mode {img.mode} is not supported (only 8-bit RGB, grayscale, "
                "palette or RGBA images; convert high-bit-depth images to 8 bits first)"
            )
        pixels = np.asarray(img, dtype=np.uint8)
    pixels = pixels.reshape(*pixels.shape[:2], -1)
    features = torch.from_numpy(pixels.astype(np.float32) / 255.0)
    meta = {
        "mode": "RGB" if pixels.shape[-1] == 3 else "L",
        "source_mode": source_mode,
        "format": source_format,
        "height": int(pixels.shape[0]),
        "width": int(pixels.shape[1]),
    }
    return Signal(features, grid_coordinates(pixels.shape[:2], 0.0, 1.0), "image", meta)


def write_image(signal: Signal, path: Path) -> None:
    """Quantise features to 8 bits and save in the format named by ``path``'s suffix."""
    path = Path(path)
    check_suffix(path, ImageModality.write_suffixes, "image")
    if signal.features.ndim != 3 or signal.out_dim not in (1, 3):
        raise InputError(
            f"an image needs features of shape (H, W, 1 or 3), got {tuple(signal.features.shape)}"
        )
    pixels = to_uint8(signal.features.detach().cpu().numpy())
    img = Image.fromarray(pixels[..., 0] if signal.out_dim == 1 else pixels, "L" if signal.out_dim == 1 else "RGB")
    with writing(path) as tmp:
        img.save(tmp, format=Image.registered_extensions()[path.suffix.lower()])


def _pixels(images: np.ndarray) -> Batch:
    """uint8 ``(N, H, W, C)`` → features in ``[0, 1]`` on the image coordinate grid."""
    features = torch.from_numpy(images.astype(np.float32) / 255.0)
    return Batch(features, grid_coordinates(images.shape[1:3], 0.0, 1.0))


class Cifar10(DataKind):
    """CIFAR-10 with its own train/test split: ``{train,test}.npz`` (shared/data layout) or the
    original ``cifar-10-batches-bin``; each unit (a file) holds many images."""

    name, modality = "cifar10", "image"

    def units(self, source: Source, root: Path, split: str) -> list[Path]:
        npz = root / f"{split}.npz"
        if npz.is_file():
            return [npz]
        binary = root / "cifar-10-batches-bin" if (root / "cifar-10-batches-bin").is_dir() else root
        pattern = "data_batch_*.bin" if split == "train" else "test_batch.bin"
        files = sorted(binary.glob(pattern))
        if not files:
            raise InputError(f"{root}: no CIFAR-10 {split} data ({split}.npz or cifar-10-batches-bin/{pattern})")
        return files

    def load(self, source: Source, unit: Path, split: str, rng: np.random.Generator) -> Batch:
        if unit.suffix == ".npz":
            with reading(unit, "CIFAR-10 npz"):
                arrays = load_npz(unit)  # sizes checked before anything is inflated
            if "images" not in arrays:
                raise InputError(f"{unit}: no 'images' array")
            images = arrays["images"]
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
                raise InputError(f"{unit}: 'images' must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}")
            return _pixels(images)
        raw = np.frombuffer(read_bounded(unit, MAX_ARRAY_BYTES, "CIFAR-10 binary batch", InputError), dtype=np.uint8)
        if raw.size == 0 or raw.size % 3073:
            raise InputError(f"{unit}: not a CIFAR-10 binary batch (size is not a multiple of 3073 bytes)")
        # each record: 1 label byte, then 3072 bytes of channel-major 32x32 RGB
        images = raw.reshape(-1, 3073)[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return _pixels(np.ascontiguousarray(images))


class ImageFiles(FileKind):
    """Image files, split by name.  ``random_crops_per_image``: for the train split, this many
    random ``patch``-sized crops per image instead of tiling it (paper: Div2K → Kodak)."""

    def __init__(self, modality: Modality):
        super().__init__(modality)
        self.name, self.options = "images", MappingProxyType({"random_crops_per_image": 0})

    def check_options(self, options: dict[str, Any], patch: list[int] | None) -> None:
        check_counts(options, 0, "random_crops_per_image")
        crops = options["random_crops_per_image"]
        if crops and patch is None:
            raise ConfigError("data.options.random_crops_per_image needs data.patch (the crop size)")
        if crops and crops * math.prod(patch) > MAX_POINTS:  # one image's crops are one allocation
            raise ConfigError(f"data.options.random_crops_per_image: {crops} crops of {patch} are more than "
                              f"{MAX_POINTS} points per image")

    def load(self, source: Source, unit: Path, split: str, rng: np.random.Generator) -> Batch:
        signal = read_image(unit)
        crops = source.options["random_crops_per_image"]
        if split != "train" or not crops:
            return Batch(signal.features[None], signal.coords)
        (h, w), (ph, pw) = signal.grid_shape, source.patch
        if ph > h or pw > w:
            raise InputError(f"{unit}: image {h}x{w} is smaller than the crop {ph}x{pw}")
        tops, lefts = rng.integers(0, h - ph + 1, crops), rng.integers(0, w - pw + 1, crops)
        features = torch.stack([signal.features[t : t + ph, s : s + pw] for t, s in zip(tops, lefts)])
        return Batch(features, grid_coordinates((ph, pw), 0.0, 1.0))


class ImageModality(Modality):
    name = "image"
    suffixes = SUFFIXES
    write_suffixes = tuple(s for s in SUFFIXES if s != ".pbm")  # Pillow writes PBM only for mode 1
    coord_range = (0.0, 1.0)
    loss = "mse"
    in_dim = 2
    codecs = ("jpeg", "jpeg2000", "webp", "avif")
    strong_codecs = ("webp", "avif")

    def data_kinds(self) -> list[DataKind]:
        return [ImageFiles(self), Cifar10()]

    def read(self, path: Path) -> Signal:
        return read_image(path)

    def write(self, signal: Signal, path: Path) -> None:
        write_image(signal, path)

    def size_text(self, grid: tuple[int, ...]) -> str:
        """width×height, as image tools write it (the grid axes are height, width)."""
        return f"{grid[1]}×{grid[0]}" if len(grid) == 2 else super().size_text(grid)

    def unpack(self, path: Path, folder: Path, limit: int | None) -> list[Path] | None:
        """An ``.npz`` holding an ``images`` array (the CIFAR-10 layout) becomes PNG files.

        Read like any input (:func:`~vcinr.modalities.common.load_npz`: sizes checked before
        anything is inflated) and checked to be 8-bit pixels before Pillow sees them: a zip bomb
        was inflated without limit and a non-zip or float array was a traceback.
        """
        if path.suffix.lower() != ".npz":
            return None
        with reading(path, "image npz"):
            arrays = load_npz(path)
        images = arrays.get("images")
        pixels = images is not None and images.dtype == np.uint8 and 0 not in images.shape[1:]
        if not pixels or not (images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 3)):
            raise InputError(f"{path}: an image .npz must hold a uint8 'images' array (N, H, W[, 3])")
        images = images[:limit]
        files = []
        for i, image in enumerate(images):
            out = folder / f"{path.stem}_{i:05d}.png"
            Image.fromarray(np.ascontiguousarray(image)).save(out)
            files.append(out)
        return files
