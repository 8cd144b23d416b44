"""Video codecs (H.264, HEVC, AV1 through PyAV / FFmpeg), coded as yuv420p."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from vcinr.errors import InputError, VcinrError
from vcinr.evaluate import metrics
from vcinr.evaluate.baselines.registry import (VIDEO_SPECS, AVSpec, CodecFailed, CodecRun, Item, Limits, Runner,
                                               av_pick, canonical_codec, require, setting_text, settings_for)
from vcinr.evaluate.points import RDPoint


def _check_video(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise InputError(f"video codecs need uint8 frames, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise InputError(f"video codecs need (T, H, W, 3) frames, got shape {frames.shape}")
    return frames


def encode_video(frames: np.ndarray, codec: str, crf: float, fps: float = 25.0,
                 pix_fmt: str = "yuv420p") -> tuple[bytes, np.ndarray, dict]:
    """Encode uint8 RGB frames at one CRF into an in-memory MP4; returns (bytes, decoded, info).

    ``pix_fmt`` ``"yuv420p"`` (default, what players expect) caps RGB PSNR at roughly 40 dB
    through chroma subsampling; ``"yuv444p"`` (H.264 High 4:4:4, HEVC RExt) lifts that cap.
    """
    import av

    codec = canonical_codec(codec, "video")
    require(codec)
    v = _check_video(frames)
    t, h, w, _ = v.shape
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):  # yuv420p needs even sides
        v = np.pad(v, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    spec = VIDEO_SPECS[codec]
    encoder = av_pick(spec.encoders, "w")
    if codec == "av1":
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner to stderr unless told not to
    rate = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(25)
    buffer = io.BytesIO()
    try:
        with av.open(buffer, "w", format=spec.container) as container:
            stream = container.add_stream(encoder, rate=rate)
            stream.width, stream.height, stream.pix_fmt = pw, ph, pix_fmt
            stream.options = dict(spec.options) | {"crf": f"{crf:g}"}
            for i, image in enumerate(v):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts = i
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        data = buffer.getvalue()
        decoded, decoder = _decode_video(data, spec)
    except VcinrError:
        raise
    except Exception as exc:  # noqa: BLE001 - FFmpeg errors are reported per setting
        raise CodecFailed(f"{codec} at crf {crf:g}: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    if decoded.shape[0] != t:
        raise CodecFailed(f"{codec} at crf {crf:g}: decoded {decoded.shape[0]} frames, expected {t}")
    info = {"encoder": encoder, "decoder": decoder, "container": spec.container, "suffix": ".mp4",
            "pix_fmt": pix_fmt, "coded_size": [pw, ph], "fps": float(rate)}
    return data, np.ascontiguousarray(decoded[:, :h, :w]), info


def _decode_video(data: bytes, spec: AVSpec) -> tuple[np.ndarray, str]:
    import av

    out = []
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if spec.decoders:
            name = av_pick(spec.decoders, "r")
            ctx = av.CodecContext.create(name, "r")
            if stream.codec_context.extradata:
                ctx.extradata = stream.codec_context.extradata
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                for frame in ctx.decode(packet):
                    out.append(frame.to_ndarray(format="rgb24", width=width, height=height))
            try:
                for frame in ctx.decode(None):
                    out.append(frame.to_ndarray(format="rgb24", width=width, height=height))
            except av.error.EOFError:
                pass
        else:
            name = stream.codec_context.name
            for frame in container.decode(stream):
                out.append(frame.to_ndarray(format="rgb24", width=width, height=height))
    if not out:
        return np.zeros((0, 0, 0, 3), np.uint8), name
    return np.stack(out), name


def run_video_codec(
    frames: np.ndarray, codec: str, settings: Iterable[float] | None = None, fps: float = 25.0,
    pix_fmt: str = "yuv420p",
) -> list[CodecRun]:
    """Run a video codec over a sweep of CRF values on one uint8 ``(T, H, W, 3)`` clip."""
    codec = canonical_codec(codec, "video")
    require(codec)
    v = _check_video(frames)
    points = v.shape[0] * v.shape[1] * v.shape[2]
    runs = []
    for value in settings_for(codec, settings):
        data, rec, info = encode_video(v, codec, value, fps, pix_fmt)
        point = RDPoint(
            modality="video", codec=codec, setting=setting_text(codec, value), value=float(value),
            bytes=len(data), psnr=metrics.psnr(v, rec), bpp=metrics.bpp(len(data), points),
        )
        runs.append(CodecRun(point, data, rec, info))
    return runs


def _video_items(path: Path, limits: Limits) -> list[Item]:
    from vcinr.modalities.video import read_video

    signal = read_video(path, max_frames=limits.max_frames, size=limits.frame_size)
    frames = np.rint(signal.features.numpy().astype(np.float64) * 255.0).astype(np.uint8)
    return [Item(path.name, frames, fps=signal.meta.get("fps"))]


VIDEO = Runner(_video_items, lambda item, codec, settings, ms_ssim: run_video_codec(item.data, codec, settings,
                                                                                      fps=item.fps or 25.0))
