"""Image codecs (JPEG, JPEG 2000, WebP, AVIF through Pillow), and sphere fields unrolled onto their grid."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from vcinr.errors import ConfigError, InputError
from vcinr.evaluate import metrics
from vcinr.evaluate.baselines.registry import (IMAGE_OPTIONS, PIL_FORMATS, CodecFailed, CodecRun, Item, Limits,
                                               Runner, canonical_codec, require, setting_text, settings_for)
from vcinr.evaluate.points import RDPoint


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise InputError(f"image codecs need a uint8 image, got {image.dtype}")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
        raise InputError(f"image codecs need an (H, W, 3) or (H, W) image, got shape {image.shape}")
    if min(image.shape[:2]) < 1:
        raise InputError(f"the image is empty (shape {image.shape})")
    return np.ascontiguousarray(image)


def encode_image(image: np.ndarray, codec: str, value: float) -> tuple[bytes, np.ndarray]:
    """Encode a uint8 image with an image codec at one setting; returns (file bytes, decoded image)."""
    from PIL import Image

    codec = canonical_codec(codec, "image")
    require(codec)
    image = _check_image(image)
    channels = 1 if image.ndim == 2 else 3
    options = dict(IMAGE_OPTIONS[codec])
    if codec == "jpeg2000":
        if value <= 0:
            raise ConfigError(f"jpeg2000: target bpp must be positive, got {value}")
        options["quality_layers"] = [8.0 * channels / float(value)]
        options["mct"] = 1 if channels == 3 else 0
        # OpenJPEG needs 2^(resolutions-1) <= the smaller side.
        options["num_resolutions"] = max(1, min(6, int(math.log2(min(image.shape[:2]))) + 1))
    else:
        if not 0 <= value <= 100:
            raise ConfigError(f"{codec}: quality must be in [0, 100], got {value}")
        options["quality"] = int(round(value))
    mode = "L" if channels == 1 else "RGB"
    buffer = io.BytesIO()
    try:
        Image.fromarray(image, mode=mode).save(buffer, format=PIL_FORMATS[codec], **options)
        data = buffer.getvalue()
        with Image.open(io.BytesIO(data)) as decoded:
            reconstruction = np.asarray(decoded.convert(mode))
    except Exception as exc:  # noqa: BLE001 - Pillow plugins raise OSError, ValueError, RuntimeError, ...
        raise CodecFailed(f"{codec} at {setting_text(codec, value)}: "
                          f"{' '.join(str(exc).split()) or type(exc).__name__}") from None
    if reconstruction.shape != image.shape:
        raise CodecFailed(f"{codec} decoded shape {reconstruction.shape}, expected {image.shape}")
    return data, reconstruction


def run_image_codec(
    image: np.ndarray, codec: str, settings: Iterable[float] | None = None, *, with_ms_ssim: bool = True
) -> list[CodecRun]:
    """Run an image codec over a sweep of settings on one uint8 image."""
    codec = canonical_codec(codec, "image")
    require(codec)
    image = _check_image(image)
    points = image.shape[0] * image.shape[1]
    runs = []
    for value in settings_for(codec, settings):
        data, rec = encode_image(image, codec, value)
        ssim = metrics.ms_ssim(image, rec) if with_ms_ssim else None
        point = RDPoint(
            modality="image", codec=codec, setting=setting_text(codec, value), value=float(value),
            bytes=len(data), psnr=metrics.psnr(image, rec), bpp=metrics.bpp(len(data), points),
            ms_ssim=ssim.value if ssim else None, ms_ssim_kind=ssim.kind if ssim else None,
        )
        suffix = {"jpeg": ".jpg", "jpeg2000": ".j2k", "webp": ".webp", "avif": ".avif"}[codec]
        runs.append(CodecRun(point, data, rec, {"suffix": suffix}))
    return runs


def sphere_to_uint8(field: np.ndarray) -> np.ndarray:
    """A ``[0, 1]`` lat×lon field as the 8-bit gray image the image codecs code."""
    field = np.asarray(field, dtype=np.float64)
    return np.rint(np.clip(field, 0.0, 1.0) * 255.0).astype(np.uint8)


def run_sphere_codec(field: np.ndarray, codec: str, settings: Iterable[float] | None = None) -> list[CodecRun]:
    """Image codec on a ``(lat, lon)`` field in ``[0, 1]`` unrolled to an 8-bit gray grid.

    The reconstruction is the decoded grid ``/ 255`` (float32, the field's shape); PSNR is
    against the float field, so it includes the 8-bit quantisation.
    """
    codec = canonical_codec(codec, "sphere")
    values = np.asarray(field)
    if values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.floating):
        raise InputError(f"sphere codecs need a float (lat, lon) field, got {values.dtype} {values.shape}")
    if not np.isfinite(values).all():
        raise InputError("the sphere field contains NaN or infinite values")
    runs = []
    for run in run_image_codec(sphere_to_uint8(values), codec, settings, with_ms_ssim=False):
        rec = (run.reconstruction.astype(np.float64) / 255.0).astype(np.float32)
        point = RDPoint(
            modality="sphere", codec=codec, setting=run.point.setting, value=run.point.value,
            bytes=run.point.bytes, psnr=metrics.psnr(values.astype(np.float64), rec.astype(np.float64)),
            bpp=run.point.bpp,
        )
        runs.append(CodecRun(point, run.data, rec.reshape(np.shape(field)), run.info))
    return runs


def _image_items(path: Path, limits: Limits) -> list[Item]:
    from vcinr.modalities import read_signal

    image = np.rint(read_signal(path, "image").features.numpy().astype(np.float64) * 255.0).astype(np.uint8)
    return [Item(path.name, image[..., 0] if image.shape[-1] == 1 else image)]


def _sphere_items(path: Path, limits: Limits) -> list[Item]:
    from vcinr.modalities.sphere import load_sphere

    return [Item(f"{path.name}[{i}]", values.astype(np.float32)) for i, values in enumerate(load_sphere(path).values)]


IMAGE = Runner(_image_items, lambda item, codec, settings, ms_ssim: run_image_codec(item.data, codec, settings,
                                                                                      with_ms_ssim=ms_ssim))
SPHERE = Runner(_sphere_items, lambda item, codec, settings, ms_ssim: run_sphere_codec(item.data, codec, settings))
