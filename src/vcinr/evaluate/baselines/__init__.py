"""Standard codecs run on real data: JPEG, JPEG 2000, WebP, AVIF, MP3, AAC, Opus, H.264, HEVC, AV1.

Every codec run encodes in memory, keeps **the exact bytes of the complete file it wrote**
(container and headers included — the rate is ``len(data)``), decodes them again, and scores
the reconstruction against the input on the ``[0, 1]`` scale of :mod:`vcinr.evaluate.metrics`.

Codecs and default sweeps (override per codec with ``settings={"jpeg": [10, 50, 90]}``):

======== ============================ =============================================================
codec    library                      swept setting (default values)
======== ============================ =============================================================
jpeg     Pillow / libjpeg(-turbo)     ``quality`` 2 5 10 20 30 40 50 60 70 80 90 95 98 100;
                                      ``optimize=True`` (optimal Huffman tables), 4:2:0 as default
jpeg2000 Pillow / OpenJPEG            target ``bpp`` 0.1 0.2 0.35 0.5 0.75 1 1.5 2 3 4 6 8, passed as
                                      ``quality_mode="rates"`` with compression ratio
                                      ``8·channels / bpp``; irreversible 9/7 wavelet, colour
                                      transform on RGB, raw ``.j2k`` codestream
webp     Pillow / libwebp             ``quality`` 0 5 10 20 30 40 50 60 70 80 90 95 100 (lossy)
avif     Pillow / libavif             ``quality`` 0 10 20 30 40 50 60 70 80 90 95 (speed 6, 4:2:0)
mp3      PyAV / libmp3lame (.mp3)     ``kbps`` 8 16 24 32 48 64 96 128 (CBR)
aac      PyAV / FFmpeg aac (.m4a)     ``kbps`` 8 16 24 32 48 64 96
opus     PyAV / libopus (.ogg)        ``kbps`` 6 8 12 16 24 32 48 64 96 128 (libopus default VBR)
h264     PyAV / libx264 (.mp4)        ``crf`` 45 40 35 30 25 20 15 10 5 (preset medium, yuv420p)
hevc     PyAV / libx265 (.mp4)        ``crf`` 45 40 35 30 25 20 15 10 5 (preset medium, yuv420p,
                                      ``info=0``: no ~2 KB options SEI)
av1      PyAV / libsvtav1 (.mp4),     ``crf`` 63 55 50 45 40 35 30 25 20 15 (preset 8, yuv420p)
         decoded with libdav1d
======== ============================ =============================================================

The image sweeps cover about 0.1–8 bpp on Kodak where the codec can (WebP and AVIF top out
near 4–7 bpp).  On tiny images the file header sets a floor: on CIFAR-10 (32×32) a JPEG is
never below ~2.4 bpp, a JPEG 2000 codestream ~1.4 bpp, an AVIF ~2.5 bpp, a WebP ~0.75 bpp;
lower settings then give (nearly) the same file.

Modalities:

* ``image``: uint8 ``(H, W, 3)`` or ``(H, W)``; PSNR and MS-SSIM on RGB / gray ``x / 255``.
* ``sphere``: a ``(lat, lon)`` float field in ``[0, 1]`` is unrolled onto the rectangular
  grid and quantised to 8-bit gray (``round(255·x)``) — the paper's "image codecs applied by
  unrolling the manifold on a rectangular grid" — then coded with the image codecs.  PSNR is
  against the float field, so it includes the 8-bit quantisation (at most about 58.9 dB).
* ``audio``: int16 ``(T,)`` or ``(T, C)`` at any sample rate.  Where a codec does not take
  that rate (Opus takes 8/12/16/24/48 kHz) the clip is resampled to the nearest higher rate it
  takes and the decoded audio back to the original rate.  FFmpeg's demuxers/decoders remove
  the encoder delay (MP3 LAME tag, MP4 edit list for AAC, Ogg pre-skip for Opus; the input is
  given pts 0 so the muxers record it); the decoded clip is cut to the input's length.  Each
  run records the remaining offset found by cross-correlation (``info["lag_samples"]``, 0
  when aligned).  PSNR on ``(x + 32768) / 65535``; kbps over the clip's duration.
* ``video``: uint8 ``(T, H, W, 3)``; coded as yuv420p (odd sides are edge-padded to even and
  cropped after decoding; ``pix_fmt="yuv444p"`` is available for H.264/HEVC); PSNR over the
  whole clip's RGB — chroma subsampling caps it near 40 dB; ``bpp = 8·bytes / (T·H·W)``.
  libx264 always embeds its options string (~0.6 KB), which counts towards the rate.

A codec missing from this build (no AVIF in Pillow, no libx265 in FFmpeg, ...) raises
:class:`CodecUnavailable`; :func:`evaluate_baselines` reports and skips it by name.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from vcinr.errors import ConfigError, InputError
from vcinr.evaluate.baselines import audio, image, registry, video
from vcinr.evaluate.baselines.audio import encode_audio, estimate_lag, run_audio_codec
from vcinr.evaluate.baselines.image import encode_image, run_image_codec, run_sphere_codec, sphere_to_uint8
from vcinr.evaluate.baselines.registry import (AUDIO_CODECS, DEFAULT_SETTINGS, IMAGE_CODECS, SETTING_DIRECTION,
                                               SETTING_NAMES, VIDEO_CODECS, CodecFailed, CodecRun, CodecUnavailable,
                                               available_codecs, canonical_codec, codec_unavailable_reason,
                                               codec_versions, encoder_tag, Item, Limits, modality_codecs, Runner,
                                               setting_text, settings_for)
from vcinr.evaluate.baselines.video import encode_video, run_video_codec
from vcinr.evaluate.points import RDPoint


class RDPoints(list):
    """A list of :class:`RDPoint` that also says which codecs/settings were skipped and why.

    ``skipped`` maps a codec name (or ``"codec setting"``) to a one-line reason;
    ``encoder_tags`` maps a codec to the version string found in its output.
    """

    def __init__(self, points: Iterable[RDPoint] = (), skipped: Mapping[str, str] | None = None,
                 encoder_tags: Mapping[str, str] | None = None) -> None:
        super().__init__(points)
        self.skipped: dict[str, str] = dict(skipped or {})
        self.encoder_tags: dict[str, str] = dict(encoder_tags or {})


# The runners of the modalities that have standard codecs (which codecs: Modality.codecs).
RUNNERS: dict[str, Runner] = {"image": image.IMAGE, "sphere": image.SPHERE, "audio": audio.AUDIO, "video": video.VIDEO}


def _runner(modality: str) -> Runner:
    modality_codecs(modality)  # a modality without standard codecs is refused in its own words
    if modality not in RUNNERS:
        raise ConfigError(f"{modality} names standard codecs, but vcinr.evaluate.baselines cannot run them on it")
    return RUNNERS[modality]


def load_items(
    files: Sequence[str | Path], modality: str, *, max_seconds: float | None = None,
    max_frames: int | None = None, frame_size: tuple[int, int] | None = None,
) -> list[Item]:
    """Read ``files`` the way the modality readers do, as the raw arrays the codecs take.

    Images → uint8; audio → int16 (first ``max_seconds``; non-16-bit PCM is rounded to 16
    bits); video → uint8 frames (first ``max_frames``, centre-cropped/resized to
    ``frame_size`` = (H, W) if given); sphere → every field of every file, float in ``[0, 1]``.
    """
    runner, limits = _runner(modality), Limits(max_seconds, max_frames, frame_size)
    items = [item for f in files for item in runner.load(Path(f), limits)]
    if not items:
        raise InputError("no files to evaluate")
    return items


def run_codec(item: Item, modality: str, codec: str, settings: Iterable[float] | None = None,
              *, with_ms_ssim: bool = True) -> list[CodecRun]:
    """One codec on one item of ``modality``, by the modality's runner."""
    return _runner(modality).run(item, codec, settings, with_ms_ssim)


def average_points(per_file: Sequence[Sequence[RDPoint]]) -> list[RDPoint]:
    """Mean bytes, rate, PSNR (and MS-SSIM) per (codec, setting) over files, like CompressAI's eval.

    ``per_file[i]`` holds file ``i``'s points.  A (codec, setting) is averaged over the files
    that have it; ``num_files`` says how many.  MS-SSIM is averaged only when every file has
    the same kind.  Order: by codec (first appearance), then setting (first appearance).
    """
    groups: dict[tuple[str, str, str], list[RDPoint]] = {}
    for points in per_file:
        for p in points:
            groups.setdefault((p.modality, p.codec, p.setting), []).append(p)
    out = []
    for (modality, codec, setting), ps in groups.items():
        mean = lambda xs: float(np.mean(xs)) if all(x is not None for x in xs) else None  # noqa: E731
        kinds = {p.ms_ssim_kind for p in ps}
        same_kind = len(kinds) == 1 and None not in kinds
        out.append(RDPoint(
            modality=modality, codec=codec, setting=setting, value=ps[0].value,
            bytes=float(np.mean([p.bytes for p in ps])),
            psnr=float(np.mean([p.psnr for p in ps])),
            bpp=mean([p.bpp for p in ps]), kbps=mean([p.kbps for p in ps]),
            ms_ssim=mean([p.ms_ssim for p in ps]) if same_kind else None,
            ms_ssim_kind=ps[0].ms_ssim_kind if same_kind else None,
            num_files=sum(p.num_files for p in ps),
        ))
    return out


def evaluate_baselines(
    files: Sequence[str | Path],
    modality: str,
    codecs: Sequence[str] | None = None,
    *,
    settings: Mapping[str, Iterable[float]] | None = None,
    max_seconds: float | None = None,
    max_frames: int | None = None,
    frame_size: tuple[int, int] | None = None,
    ms_ssim: bool = True,
    progress: bool = False,
) -> RDPoints:
    """Run standard codecs on ``files`` and average per (codec, setting) over the files.

    Args:
        files: data files of one modality (for ``"sphere"`` every field of every file counts).
        modality: ``"image"``, ``"audio"``, ``"video"`` or ``"sphere"``.
        codecs: codec names (default: all of the modality's codecs).  A codec this build
            cannot run is skipped with a warning and listed in the result's ``skipped``; so is
            a setting that fails on some file (the other files still count).
        settings: per-codec sweeps overriding :data:`DEFAULT_SETTINGS`.
        max_seconds / max_frames / frame_size: see :func:`load_items` (the paper uses the
            first 3 s of LibriSpeech and 24 frames of 128×128 for UCF-101).
        ms_ssim: compute MS-SSIM for images (slow on CPU: about 1–3 s per Kodak-size point).
        progress: show a progress bar over files.

    Returns:
        :class:`RDPoints` (a list of averaged :class:`RDPoint`) with ``skipped`` and
        ``encoder_tags``.
    """
    known = modality_codecs(modality)
    chosen = [canonical_codec(c, modality) for c in (codecs if codecs is not None else known)]
    chosen = list(dict.fromkeys(chosen))
    if not chosen:
        raise ConfigError("no codecs to evaluate")
    overrides = {canonical_codec(k, modality): list(v) for k, v in (settings or {}).items()}
    for codec, values in overrides.items():
        settings_for(codec, values)
    result = RDPoints()
    runnable = []
    for codec in chosen:
        reason = registry.codec_unavailable_reason(codec)
        if reason:
            warnings.warn(f"skipping {reason}", stacklevel=2)
            result.skipped[codec] = reason
        else:
            runnable.append(codec)
    items = load_items(files, modality, max_seconds=max_seconds, max_frames=max_frames, frame_size=frame_size)
    iterator: Iterable[Item] = items
    if progress:
        from tqdm import tqdm

        iterator = tqdm(items, desc=f"{modality} baselines", unit="file")
    per_file: list[list[RDPoint]] = []
    for item in iterator:
        points: list[RDPoint] = []
        for codec in runnable:
            for value in settings_for(codec, overrides.get(codec)):
                try:
                    runs = run_codec(item, modality, codec, [value], with_ms_ssim=ms_ssim)
                except CodecFailed as exc:
                    key = f"{codec} {setting_text(codec, value)}"
                    result.skipped.setdefault(key, f"{item.name}: {exc}")
                    continue
                points.extend(r.point for r in runs)
                tag = encoder_tag(codec, runs[0].data)
                if tag:
                    result.encoder_tags.setdefault(codec, tag)
        per_file.append(points)
    result.extend(average_points(per_file))
    return result


def nearest_point(points: Iterable[RDPoint], rate: float, codec: str | None = None) -> RDPoint | None:
    """The point (of ``codec``, if given) whose rate is closest to ``rate`` (in log terms)."""
    candidates = [p for p in points if (codec is None or p.codec == codec) and p.rate and p.rate > 0]
    if not candidates or rate <= 0:
        return None
    return min(candidates, key=lambda p: abs(math.log(p.rate / rate)))




__all__ = [
    "AUDIO_CODECS", "DEFAULT_SETTINGS", "IMAGE_CODECS", "SETTING_DIRECTION", "SETTING_NAMES",
    "VIDEO_CODECS", "CodecFailed", "CodecRun", "CodecUnavailable", "Item", "RDPoints", "available_codecs",
    "average_points", "canonical_codec", "codec_unavailable_reason", "codec_versions", "encode_audio",
    "encode_image", "encode_video", "encoder_tag", "estimate_lag", "evaluate_baselines", "load_items",
    "nearest_point", "run_audio_codec", "run_codec", "run_image_codec", "run_sphere_codec", "run_video_codec",
    "sphere_to_uint8",
]
