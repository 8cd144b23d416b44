"""Video: anything FFmpeg (PyAV) decodes — MP4, AVI, MKV, MOV, WebM, GIF.

Conventions: grid axes ``(T, H, W)``; coordinates in ``[0, 1]^3``; features are RGB
``uint8 / 255`` in ``[0, 1]`` (``out_dim`` 3).

Writing picks the encoder from the suffix: ``.mp4``/``.mov`` use H.264 (libx264, CRF 18,
yuv420p — yuv444p when a side is odd), which is lossy; ``.mkv``/``.avi`` use FFV1 on RGB
(``bgr0``), which is lossless, so a round trip through them is bit-exact.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from PIL import Image

from vcinr.errors import InputError
from vcinr.modalities.base import Modality, SkipFile
from vcinr.modalities.common import check_suffix, meta_number, reading, to_uint8, writing
from vcinr.modalities.datasets import check_counts, check_size, consecutive_clips
from vcinr.signal import MAX_POINTS, Signal, grid_coordinates

SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg")
_LOSSY = {"codec": "libx264", "options": {"crf": "18"}}
_LOSSLESS = {"codec": "ffv1", "pix_fmt": "bgr0", "options": {}}
_ENCODERS = {".mp4": _LOSSY, ".mov": _LOSSY, ".mkv": _LOSSLESS, ".avi": _LOSSLESS}


def center_crop_resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Crop the largest centred window with the aspect ratio of ``size`` = (H, W), then resize.

    This is the paper's UCF-101 preprocessing (centre-crop 240×240, resize to 128×128) for any
    target shape.
    """
    h, w = frame.shape[:2]
    th, tw = size
    if h * tw > w * th:  # too tall: crop rows
        ch, cw = max(1, round(w * th / tw)), w
    else:
        ch, cw = h, max(1, round(h * tw / th))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = frame[top : top + ch, left : left + cw]
    if (ch, cw) == (th, tw):
        return np.ascontiguousarray(crop)
    return np.asarray(Image.fromarray(crop).resize((tw, th), Image.Resampling.BICUBIC, reducing_gap=None))


def read_video(path: Path, max_frames: int | None = None, size: tuple[int, int] | None = None) -> Signal:
    """Decode the first ``max_frames`` frames of ``path``, optionally centre-cropped and resized.

    ``max_frames`` and ``size`` (H, W) keep long or high-resolution clips within memory when
    building training sets; the plain :meth:`VideoModality.read` decodes everything as is.
    """
    path = Path(path)
    check_suffix(path, SUFFIXES, "video")
    if max_frames is not None and max_frames <= 0:
        raise InputError(f"max_frames must be positive, got {max_frames}")
    import av  # PyAV takes ~0.2 s to import: only for video, not at every start of `vcinr`

    frames: list[np.ndarray] = []
    with reading(path, "video"), av.open(str(path)) as container:
        if not container.streams.video:
            raise InputError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 25
        meta = {
            "fps": float(rate),
            "codec": stream.codec_context.name,
            "container": container.format.name,
            "width": int(stream.width),
            "height": int(stream.height),
        }
        frame_points = (size[0] * size[1]) if size else meta["width"] * meta["height"]
        if max(frame_points, meta["width"] * meta["height"]) > MAX_POINTS:  # before FFmpeg decodes a frame
            raise InputError(f"{path}: {meta['width']}x{meta['height']} pixels per frame is more than vcinr reads")
        for frame in container.decode(stream):
            if (len(frames) + 1) * frame_points > MAX_POINTS:  # before this frame is kept
                raise InputError(f"{path}: more than {MAX_POINTS} pixels in its frames, more than vcinr reads")
            # Every frame is converted to the first frame's size in case the stream changes size.
            rgb = frame.to_ndarray(format="rgb24", width=meta["width"], height=meta["height"])
            frames.append(center_crop_resize(rgb, size) if size else rgb)
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise InputError(f"{path}: the video holds no frames")
    pixels = np.stack(frames)
    features = torch.from_numpy(pixels.astype(np.float32) / 255.0)
    return Signal(features, grid_coordinates(pixels.shape[:3], 0.0, 1.0), "video", meta)


def write_video(signal: Signal, path: Path) -> None:
    """Encode features as 8-bit RGB frames at ``meta["fps"]`` (25 if unknown)."""
    path = Path(path)
    check_suffix(path, VideoModality.write_suffixes, "video")
    if signal.features.ndim != 4 or signal.out_dim != 3:
        raise InputError(f"a video needs features of shape (T, H, W, 3), got {tuple(signal.features.shape)}")
    pixels = to_uint8(signal.features.detach().cpu().numpy())
    _, height, width, _ = pixels.shape
    encoder = _ENCODERS[path.suffix.lower()]
    pix_fmt = encoder.get("pix_fmt") or ("yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p")
    fps = meta_number(signal.meta, "fps", 25.0)
    if not 0 < fps <= 1000:
        raise InputError(f"signal meta 'fps' must be in (0, 1000], got {fps:g}")
    rate = Fraction(fps).limit_denominator(65535)
    import av  # imported here, as in the reader

    with writing(path) as tmp, av.open(str(tmp), mode="w") as container:
        stream = container.add_stream(encoder["codec"], rate=rate, options=encoder["options"])
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for image in pixels:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


class VideoModality(Modality):
    name = "video"
    suffixes = SUFFIXES
    write_suffixes = tuple(_ENCODERS)
    coord_range = (0.0, 1.0)
    loss = "mse"
    in_dim = 3
    codecs = ("h264", "hevc", "av1")
    # frames per clip, size (int or [H, W]: centre-crop to that aspect, then resize, as the paper does
    # for UCF-101) and consecutive clips per file
    dataset_options = MappingProxyType({"frames": 8, "size": 32, "clips_per_video": 1})

    def size_text(self, grid: tuple[int, ...]) -> str:
        return f"{grid[0]} frames of {grid[2]}×{grid[1]}" if len(grid) == 3 else super().size_text(grid)

    def read(self, path: Path) -> Signal:
        return read_video(path)

    def check_dataset_options(self, options: dict[str, Any]) -> None:
        check_counts(options, 1, "frames", "clips_per_video")
        check_size(options)

    def dataset_signals(self, path: Path, options: dict[str, Any]) -> list[Signal]:
        """``clips_per_video`` consecutive clips of ``frames`` frames resized to ``size`` (as many as the file has)."""
        frames, clips, size = options["frames"], options["clips_per_video"], options["size"]
        size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        signal = read_video(path, max_frames=frames * clips, size=size)
        clips = consecutive_clips(signal, frames, grid_coordinates((frames, *signal.grid_shape[1:]), 0.0, 1.0))
        if not clips:
            raise SkipFile(f"fewer than frames={frames} frames")
        return clips

    def write(self, signal: Signal, path: Path) -> None:
        write_video(signal, path)
