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

import io
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vcinr.errors import ConfigError, InputError, VcinrError
from vcinr.evaluate import metrics
from vcinr.evaluate.points import RDPoint
from vcinr.modalities import MODALITIES, get_modality


class CodecUnavailable(VcinrError):
    """A standard codec that this build of Pillow / FFmpeg cannot run."""


class CodecFailed(VcinrError):
    """A codec that exists but refused or failed at one setting on one input."""


# --- codec registry -----------------------------------------------------------------------

# Which codecs each modality is compared with is the modality plug-in's to say (Modality.codecs).
IMAGE_CODECS = get_modality("image").codecs
AUDIO_CODECS = get_modality("audio").codecs
VIDEO_CODECS = get_modality("video").codecs
ALIASES = {
    "jpg": "jpeg", "jpeg-2000": "jpeg2000", "jpeg_2000": "jpeg2000", "j2k": "jpeg2000", "jp2": "jpeg2000",
    "avc": "h264", "h.264": "h264", "x264": "h264", "h265": "hevc", "h.265": "hevc", "x265": "hevc",
}

DEFAULT_SETTINGS: dict[str, tuple[float, ...]] = {
    "jpeg": (2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 100),
    "jpeg2000": (0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8),
    "webp": (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100),
    "avif": (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
    "mp3": (8, 16, 24, 32, 48, 64, 96, 128),
    "aac": (8, 16, 24, 32, 48, 64, 96),
    "opus": (6, 8, 12, 16, 24, 32, 48, 64, 96, 128),
    "h264": (45, 40, 35, 30, 25, 20, 15, 10, 5),
    "hevc": (45, 40, 35, 30, 25, 20, 15, 10, 5),
    "av1": (63, 55, 50, 45, 40, 35, 30, 25, 20, 15),
}
SETTING_NAMES = {
    "jpeg": "quality", "jpeg2000": "bpp", "webp": "quality", "avif": "quality",
    "mp3": "kbps", "aac": "kbps", "opus": "kbps", "h264": "crf", "hevc": "crf", "av1": "crf",
}
# Which way the swept value moves the rate: +1 = a larger value gives a larger file.
SETTING_DIRECTION = {"h264": -1, "hevc": -1, "av1": -1}

_PIL_FEATURES = {"jpeg": "jpg", "jpeg2000": "jpg_2000", "webp": "webp", "avif": "avif"}
_PIL_FORMATS = {"jpeg": "JPEG", "jpeg2000": "JPEG2000", "webp": "WEBP", "avif": "AVIF"}
_IMAGE_OPTIONS: dict[str, dict[str, Any]] = {
    "jpeg": {"optimize": True},
    "jpeg2000": {"quality_mode": "rates", "irreversible": True, "no_jp2": True},
    "webp": {"lossless": False, "method": 4},
    "avif": {"speed": 6, "subsampling": "4:2:0"},
}


@dataclass(frozen=True)
class _AVSpec:
    encoders: tuple[str, ...]  # first available is used
    container: str
    decoders: tuple[str, ...] = ()  # explicit decoder (first available); empty = FFmpeg's default
    options: tuple[tuple[str, str], ...] = ()


_AUDIO_SPECS = {
    "mp3": _AVSpec(("libmp3lame",), "mp3"),
    "aac": _AVSpec(("aac", "libfdk_aac"), "ipod"),  # ipod = .m4a
    "opus": _AVSpec(("libopus",), "ogg"),
}
_VIDEO_SPECS = {
    "h264": _AVSpec(("libx264",), "mp4", options=(("preset", "medium"),)),
    "hevc": _AVSpec(("libx265",), "mp4", options=(("preset", "medium"), ("x265-params", "log-level=error:info=0"))),
    "av1": _AVSpec(("libsvtav1",), "mp4", decoders=("libdav1d", "libaom-av1"), options=(("preset", "8"),)),
}
_CONTAINER_SUFFIX = {"mp3": ".mp3", "ipod": ".m4a", "ogg": ".ogg", "mp4": ".mp4"}


def canonical_codec(name: str, modality: str | None = None) -> str:
    """The registry name of ``name`` (aliases like ``"jpg"``, ``"x264"`` accepted)."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    known = (get_modality(modality).codecs if modality else ()) or tuple(DEFAULT_SETTINGS)
    if key not in known:
        where = f" for {modality}" if modality else ""
        raise ConfigError(f"unknown codec {name!r}{where} (known: {', '.join(known)})")
    return key


def _modality_codecs(modality: str) -> tuple[str, ...]:
    codecs = get_modality(modality).codecs
    if not codecs:
        with_codecs = [name for name, plugin in MODALITIES.items() if plugin.codecs]
        raise ConfigError(
            f"no standard codecs for modality {modality!r} (baselines exist for {', '.join(with_codecs)})"
        )
    return codecs


# --- availability and versions ------------------------------------------------------------


def _pil_feature(name: str) -> tuple[bool, str | None]:
    from PIL import features

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old Pillow warns about unknown feature names
        try:
            return bool(features.check(name)), features.version(name)
        except (ValueError, KeyError):
            return False, None


def _av_codec(name: str, mode: str):
    import av

    try:
        return av.codec.Codec(name, mode)
    except Exception:  # noqa: BLE001 - av raises UnknownCodecError / ValueError depending on version
        return None


def _av_pick(names: Sequence[str], mode: str) -> str | None:
    return next((n for n in names if _av_codec(n, mode) is not None), None)


def codec_unavailable_reason(codec: str) -> str | None:
    """Why ``codec`` cannot run in this build, or ``None`` when it can."""
    codec = canonical_codec(codec)
    if codec in _PIL_FEATURES:
        ok, _ = _pil_feature(_PIL_FEATURES[codec])
        return None if ok else f"{codec}: Pillow was built without {_PIL_FEATURES[codec]} support"
    spec = (_AUDIO_SPECS | _VIDEO_SPECS)[codec]
    try:
        import av  # noqa: F401
    except ImportError:
        return f"{codec}: PyAV is not installed"
    if _av_pick(spec.encoders, "w") is None:
        return f"{codec}: FFmpeg in this PyAV has no encoder {' / '.join(spec.encoders)}"
    if spec.decoders and _av_pick(spec.decoders, "r") is None:
        return f"{codec}: FFmpeg in this PyAV has no decoder {' / '.join(spec.decoders)}"
    return None


def available_codecs(modality: str) -> dict[str, str | None]:
    """Every codec of ``modality`` → ``None`` if it runs here, else the reason it does not."""
    return {c: codec_unavailable_reason(c) for c in _modality_codecs(modality)}


def _require(codec: str) -> None:
    reason = codec_unavailable_reason(codec)
    if reason:
        raise CodecUnavailable(reason)


def codec_versions() -> dict[str, Any]:
    """Library versions and encoder/decoder names behind every codec, for the results JSON."""
    import PIL

    out: dict[str, Any] = {"pillow": PIL.__version__, "pillow_features": {}}
    for feature in ("jpg", "libjpeg_turbo", "jpg_2000", "webp", "avif"):
        ok, version = _pil_feature(feature)
        out["pillow_features"][feature] = version if ok else None
    try:
        import av
    except ImportError:
        out["pyav"] = None
        return out
    out["pyav"] = av.__version__
    out["ffmpeg"] = getattr(av, "ffmpeg_version_info", None)
    out["libav"] = {k: ".".join(map(str, v)) for k, v in av.library_versions.items()}
    encoders: dict[str, Any] = {}
    for codec, spec in (_AUDIO_SPECS | _VIDEO_SPECS).items():
        enc = _av_pick(spec.encoders, "w")
        dec = _av_pick(spec.decoders, "r") if spec.decoders else None
        encoders[codec] = {
            "encoder": enc,
            "encoder_long_name": _av_codec(enc, "w").long_name if enc else None,
            "decoder": dec or "ffmpeg default",
            "container": spec.container,
            "options": dict(spec.options),
        }
    out["av_codecs"] = encoders
    out["image_options"] = {k: dict(v) for k, v in _IMAGE_OPTIONS.items()}
    return out


_TAG_PATTERNS = {
    "h264": rb"x264 - core \d+(?: r\d+ [0-9a-f]+)?",
    "hevc": rb"x265 \(build \d+\) - [\w.+-]+",
    "mp3": rb"LAME\d+\.\d+\w*|Lav[cf]\d+\.\d+\.\d+",
    "opus": rb"libopus [\w.-]+|Lav[cf]\d+\.\d+\.\d+",
    "aac": rb"Lav[cf]\d+\.\d+\.\d+",
    "av1": rb"Lavf\d+\.\d+\.\d+",
}


def encoder_tag(codec: str, data: bytes) -> str | None:
    """The encoder's version string embedded in its output (x264 core, x265 build, LAME, ...)."""
    pattern = _TAG_PATTERNS.get(codec)
    if pattern is None:
        return None
    found = re.search(pattern, data[:65536])
    return found.group().decode("ascii", "replace") if found else None


# --- one codec run ------------------------------------------------------------------------


@dataclass
class CodecRun:
    """One codec at one setting on one input.

    ``data`` is the complete file the codec wrote (``point.bytes == len(data)``) and
    ``reconstruction`` its decoding, with the input's shape and dtype.
    """

    point: RDPoint
    data: bytes
    reconstruction: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def suffix(self) -> str:
        """File suffix that matches :attr:`data` (``.jpg``, ``.m4a``, ``.mp4``, ...)."""
        return self.info.get("suffix", "")


def _setting_text(codec: str, value: float) -> str:
    v = float(value)
    return f"{SETTING_NAMES[codec]}={int(v) if v.is_integer() else v:g}"


def _settings_for(codec: str, settings: Iterable[float] | None) -> list[float]:
    values = list(DEFAULT_SETTINGS[codec] if settings is None else settings)
    if not values:
        raise ConfigError(f"{codec}: the list of settings is empty")
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise ConfigError(f"{codec}: setting {v!r} is not a number")
    return values


# images ------------------------------------------------------------------------------------


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
    _require(codec)
    image = _check_image(image)
    channels = 1 if image.ndim == 2 else 3
    options = dict(_IMAGE_OPTIONS[codec])
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
        Image.fromarray(image, mode=mode).save(buffer, format=_PIL_FORMATS[codec], **options)
        data = buffer.getvalue()
        with Image.open(io.BytesIO(data)) as decoded:
            reconstruction = np.asarray(decoded.convert(mode))
    except Exception as exc:  # noqa: BLE001 - Pillow plugins raise OSError, ValueError, RuntimeError, ...
        raise CodecFailed(f"{codec} at {_setting_text(codec, value)}: "
                          f"{' '.join(str(exc).split()) or type(exc).__name__}") from None
    if reconstruction.shape != image.shape:
        raise CodecFailed(f"{codec} decoded shape {reconstruction.shape}, expected {image.shape}")
    return data, reconstruction


def run_image_codec(
    image: np.ndarray, codec: str, settings: Iterable[float] | None = None, *, with_ms_ssim: bool = True
) -> list[CodecRun]:
    """Run an image codec over a sweep of settings on one uint8 image."""
    codec = canonical_codec(codec, "image")
    _require(codec)
    image = _check_image(image)
    points = image.shape[0] * image.shape[1]
    runs = []
    for value in _settings_for(codec, settings):
        data, rec = encode_image(image, codec, value)
        ssim = metrics.ms_ssim(image, rec) if with_ms_ssim else None
        point = RDPoint(
            modality="image", codec=codec, setting=_setting_text(codec, value), value=float(value),
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


# audio -------------------------------------------------------------------------------------


def _check_audio(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        raise InputError(f"audio codecs need int16 samples, got {samples.dtype}")
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[0] == 0 or samples.shape[1] == 0:
        raise InputError(f"audio codecs need (T,) or (T, channels) samples, got shape {samples.shape}")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise InputError(f"the sample rate must be a positive integer, got {sample_rate!r}")
    return np.ascontiguousarray(samples)


def _coded_rate(rates: Sequence[int] | None, rate: int) -> int:
    """``rate`` if the codec takes it, else the nearest higher rate it takes (else its highest)."""
    if not rates or rate in rates:
        return rate
    higher = sorted(r for r in rates if r >= rate)
    return higher[0] if higher else max(rates)


# FFmpeg layouts without an LFE channel (an LFE channel would be coded band-limited).
_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "6.0", 7: "7.0", 8: "octagonal"}


def _layout(channels: int):
    import av

    if channels not in _LAYOUTS:
        raise CodecFailed(f"audio codecs here take 1 to 8 channels, the clip has {channels}")
    return av.AudioLayout(_LAYOUTS[channels])


def estimate_lag(reference: np.ndarray, test: np.ndarray, max_lag: int) -> int:
    """Lag (in samples) maximising the cross-correlation of ``test`` against ``reference``.

    Positive: ``test`` is late.  Uses the first channel and at most the first 480,000 samples;
    ``max_lag`` bounds the search.
    """
    a = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)[:, 0]
    b = np.asarray(test, dtype=np.float64).reshape(len(test), -1)[:, 0]
    n = min(len(a), len(b), 480_000)
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    if n == 0 or not a.any() or not b.any():
        return 0
    size = 1 << int(2 * n - 1).bit_length()
    cc = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)  # cc[k] = sum b[i+k] a[i]
    max_lag = max(0, min(int(max_lag), n - 1))
    lags = np.arange(-max_lag, max_lag + 1)
    return int(lags[np.argmax(cc[lags % size])])


def encode_audio(samples: np.ndarray, sample_rate: int, codec: str, kbps: float) -> tuple[bytes, np.ndarray, dict]:
    """Encode int16 audio at ``kbps`` into an in-memory container; returns (bytes, decoded, info)."""
    import av

    codec = canonical_codec(codec, "audio")
    _require(codec)
    x = _check_audio(samples, sample_rate)
    frames_in, channels = x.shape
    if codec == "mp3" and channels > 2:
        raise CodecFailed(f"mp3 codes at most 2 channels, the clip has {channels}")
    if not kbps > 0:
        raise ConfigError(f"{codec}: bitrate must be positive, got {kbps} kbps")
    spec = _AUDIO_SPECS[codec]
    encoder = _av_pick(spec.encoders, "w")
    enc_codec = av.codec.Codec(encoder, "w")
    rate = _coded_rate(enc_codec.audio_rates, int(sample_rate))
    sample_format = enc_codec.audio_formats[0].name if enc_codec.audio_formats else "fltp"
    layout = _layout(channels)
    buffer = io.BytesIO()
    try:
        with av.open(buffer, "w", format=spec.container) as container:
            stream = container.add_stream(encoder, rate=rate)
            stream.bit_rate = int(round(kbps * 1000))
            stream.layout = layout
            stream.codec_context.format = sample_format
            frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate = int(sample_rate)
            frame.pts = 0
            frame.time_base = Fraction(1, int(sample_rate))
            resampler = av.AudioResampler(format=sample_format, layout=layout, rate=rate)
            for chunk in resampler.resample(frame) + resampler.resample(None):
                for packet in stream.encode(chunk):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        data = buffer.getvalue()
        decoded, info = _decode_audio(data, int(sample_rate), layout)
    except VcinrError:
        raise
    except Exception as exc:  # noqa: BLE001 - FFmpeg errors are reported per setting
        raise CodecFailed(f"{codec} at {kbps:g} kbps: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    got = len(decoded)
    if got < frames_in:
        decoded = np.concatenate([decoded, np.zeros((frames_in - got, channels), np.int16)])
    decoded = decoded[:frames_in]
    info.update(
        encoder=encoder, container=spec.container, suffix=_CONTAINER_SUFFIX[spec.container],
        coded_sample_rate=rate, decoded_samples=got, padded_samples=max(0, frames_in - got),
    )
    return data, decoded.reshape(np.shape(samples)), info


def _decode_audio(data: bytes, sample_rate: int, layout) -> tuple[np.ndarray, dict]:
    import av

    chunks = []
    channels = layout.nb_channels
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout=layout, rate=sample_rate)
        dropped = 0
        for frame in container.decode(stream):
            skip = 0
            if frame.pts is not None and frame.pts < 0 and frame.time_base is not None:
                # Priming samples the demuxer left in (negative timestamps): drop them.
                skip = min(frame.samples, int(round(-frame.pts * frame.time_base * frame.sample_rate)))
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1, channels))
            if skip:
                dropped += skip
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1, channels))
        decoder = stream.codec_context.name
        decoded_rate = stream.codec_context.sample_rate or sample_rate
    decoded = np.concatenate(chunks) if chunks else np.zeros((0, channels), np.int16)
    if dropped:
        decoded = decoded[int(round(dropped * sample_rate / decoded_rate)):]
    return decoded.astype(np.int16), {"decoder": decoder, "dropped_priming_samples": dropped}


def run_audio_codec(
    samples: np.ndarray, sample_rate: int, codec: str, settings: Iterable[float] | None = None
) -> list[CodecRun]:
    """Run an audio codec over a sweep of bitrates (kbps) on one int16 clip."""
    codec = canonical_codec(codec, "audio")
    _require(codec)
    x = _check_audio(samples, sample_rate)
    seconds = x.shape[0] / float(sample_rate)
    runs = []
    for value in _settings_for(codec, settings):
        data, rec, info = encode_audio(samples, sample_rate, codec, value)
        info["lag_samples"] = estimate_lag(x, rec.reshape(x.shape), max_lag=int(0.1 * sample_rate))
        point = RDPoint(
            modality="audio", codec=codec, setting=_setting_text(codec, value), value=float(value),
            bytes=len(data), psnr=metrics.psnr(x, rec.reshape(x.shape)), kbps=metrics.kbps(len(data), seconds),
        )
        runs.append(CodecRun(point, data, rec, info))
    return runs


# video -------------------------------------------------------------------------------------


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
    _require(codec)
    v = _check_video(frames)
    t, h, w, _ = v.shape
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):  # yuv420p needs even sides
        v = np.pad(v, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    spec = _VIDEO_SPECS[codec]
    encoder = _av_pick(spec.encoders, "w")
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


def _decode_video(data: bytes, spec: _AVSpec) -> tuple[np.ndarray, str]:
    import av

    out = []
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if spec.decoders:
            name = _av_pick(spec.decoders, "r")
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
    _require(codec)
    v = _check_video(frames)
    points = v.shape[0] * v.shape[1] * v.shape[2]
    runs = []
    for value in _settings_for(codec, settings):
        data, rec, info = encode_video(v, codec, value, fps, pix_fmt)
        point = RDPoint(
            modality="video", codec=codec, setting=_setting_text(codec, value), value=float(value),
            bytes=len(data), psnr=metrics.psnr(v, rec), bpp=metrics.bpp(len(data), points),
        )
        runs.append(CodecRun(point, data, rec, info))
    return runs


# --- whole data sets ----------------------------------------------------------------------


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


@dataclass
class Item:
    """One evaluation item read from a file (an image, a clip, one sphere field)."""

    name: str
    data: np.ndarray
    sample_rate: int | None = None
    fps: float | None = None


def load_items(
    files: Sequence[str | Path], modality: str, *, max_seconds: float | None = None,
    max_frames: int | None = None, frame_size: tuple[int, int] | None = None,
) -> list[Item]:
    """Read ``files`` the way the modality readers do, as the raw arrays the codecs take.

    Images → uint8; audio → int16 (first ``max_seconds``; non-16-bit PCM is rounded to 16
    bits); video → uint8 frames (first ``max_frames``, centre-cropped/resized to
    ``frame_size`` = (H, W) if given); sphere → every field of every file, float in ``[0, 1]``.
    """
    from vcinr.modalities import read_signal
    from vcinr.modalities.audio import read_audio
    from vcinr.modalities.sphere import load_sphere
    from vcinr.modalities.video import read_video

    _modality_codecs(modality)
    items: list[Item] = []
    for f in files:
        path = Path(f)
        if modality == "image":
            signal = read_signal(path, "image")
            image = np.rint(signal.features.numpy().astype(np.float64) * 255.0).astype(np.uint8)
            items.append(Item(path.name, image[..., 0] if image.shape[-1] == 1 else image))
        elif modality == "audio":
            signal = read_audio(path, max_seconds=max_seconds)
            items.append(Item(path.name, metrics.unit_to_int16(signal.features.numpy()), signal.meta["sample_rate"]))
        elif modality == "video":
            signal = read_video(path, max_frames=max_frames, size=frame_size)
            frames = np.rint(signal.features.numpy().astype(np.float64) * 255.0).astype(np.uint8)
            items.append(Item(path.name, frames, fps=signal.meta.get("fps")))
        else:  # sphere
            fields = load_sphere(path)
            for i, values in enumerate(fields.values):
                items.append(Item(f"{path.name}[{i}]", values.astype(np.float32)))
    if not items:
        raise InputError("no files to evaluate")
    return items


def run_codec(item: Item, modality: str, codec: str, settings: Iterable[float] | None = None,
              *, with_ms_ssim: bool = True) -> list[CodecRun]:
    """Dispatch one item to the modality's ``run_*_codec``."""
    if modality == "image":
        return run_image_codec(item.data, codec, settings, with_ms_ssim=with_ms_ssim)
    if modality == "sphere":
        return run_sphere_codec(item.data, codec, settings)
    if modality == "audio":
        return run_audio_codec(item.data, item.sample_rate, codec, settings)
    if modality == "video":
        return run_video_codec(item.data, codec, settings, fps=item.fps or 25.0)
    _modality_codecs(modality)
    raise AssertionError(modality)


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
    known = _modality_codecs(modality)
    chosen = [canonical_codec(c, modality) for c in (codecs if codecs is not None else known)]
    chosen = list(dict.fromkeys(chosen))
    if not chosen:
        raise ConfigError("no codecs to evaluate")
    overrides = {canonical_codec(k, modality): list(v) for k, v in (settings or {}).items()}
    for codec, values in overrides.items():
        _settings_for(codec, values)
    result = RDPoints()
    runnable = []
    for codec in chosen:
        reason = codec_unavailable_reason(codec)
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
            for value in _settings_for(codec, overrides.get(codec)):
                try:
                    runs = run_codec(item, modality, codec, [value], with_ms_ssim=ms_ssim)
                except CodecFailed as exc:
                    key = f"{codec} {_setting_text(codec, value)}"
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
