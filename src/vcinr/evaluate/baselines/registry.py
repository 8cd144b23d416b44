"""The standard codecs by name: settings, aliases, availability in this build, library versions, one run.

Shared by the per-modality runners (:mod:`.image`, :mod:`.audio`, :mod:`.video`); which codecs a
modality is compared with is its plug-in's to say (:attr:`vcinr.modalities.base.Modality.codecs`).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vcinr.errors import ConfigError, VcinrError
from vcinr.evaluate.points import RDPoint
from vcinr.modalities import MODALITIES, get_modality


class CodecUnavailable(VcinrError):
    """A standard codec that this build of Pillow / FFmpeg cannot run."""


class CodecFailed(VcinrError):
    """A codec that exists but refused or failed at one setting on one input."""


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

PIL_FEATURES = {"jpeg": "jpg", "jpeg2000": "jpg_2000", "webp": "webp", "avif": "avif"}
PIL_FORMATS = {"jpeg": "JPEG", "jpeg2000": "JPEG2000", "webp": "WEBP", "avif": "AVIF"}
IMAGE_OPTIONS: dict[str, dict[str, Any]] = {
    "jpeg": {"optimize": True},
    "jpeg2000": {"quality_mode": "rates", "irreversible": True, "no_jp2": True},
    "webp": {"lossless": False, "method": 4},
    "avif": {"speed": 6, "subsampling": "4:2:0"},
}


@dataclass(frozen=True)
class AVSpec:
    encoders: tuple[str, ...]  # first available is used
    container: str
    decoders: tuple[str, ...] = ()  # explicit decoder (first available); empty = FFmpeg's default
    options: tuple[tuple[str, str], ...] = ()


AUDIO_SPECS = {
    "mp3": AVSpec(("libmp3lame",), "mp3"),
    "aac": AVSpec(("aac", "libfdk_aac"), "ipod"),  # ipod = .m4a
    "opus": AVSpec(("libopus",), "ogg"),
}
VIDEO_SPECS = {
    "h264": AVSpec(("libx264",), "mp4", options=(("preset", "medium"),)),
    "hevc": AVSpec(("libx265",), "mp4", options=(("preset", "medium"), ("x265-params", "log-level=error:info=0"))),
    "av1": AVSpec(("libsvtav1",), "mp4", decoders=("libdav1d", "libaom-av1"), options=(("preset", "8"),)),
}
CONTAINER_SUFFIX = {"mp3": ".mp3", "ipod": ".m4a", "ogg": ".ogg", "mp4": ".mp4"}


def canonical_codec(name: str, modality: str | None = None) -> str:
    """The registry name of ``name`` (aliases like ``"jpg"``, ``"x264"`` accepted)."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    known = (get_modality(modality).codecs if modality else ()) or tuple(DEFAULT_SETTINGS)
    if key not in known:
        where = f" for {modality}" if modality else ""
        raise ConfigError(f"unknown codec {name!r}{where} (known: {', '.join(known)})")
    return key


def modality_codecs(modality: str) -> tuple[str, ...]:
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


def av_codec(name: str, mode: str):
    import av

    try:
        return av.codec.Codec(name, mode)
    except Exception:  # noqa: BLE001 - av raises UnknownCodecError / ValueError depending on version
        return None


def av_pick(names: Sequence[str], mode: str) -> str | None:
    return next((n for n in names if av_codec(n, mode) is not None), None)


def codec_unavailable_reason(codec: str) -> str | None:
    """Why ``codec`` cannot run in this build, or ``None`` when it can."""
    codec = canonical_codec(codec)
    if codec in PIL_FEATURES:
        ok, _ = _pil_feature(PIL_FEATURES[codec])
        return None if ok else f"{codec}: Pillow was built without {PIL_FEATURES[codec]} support"
    spec = (AUDIO_SPECS | VIDEO_SPECS)[codec]
    try:
        import av  # noqa: F401
    except ImportError:
        return f"{codec}: PyAV is not installed"
    if av_pick(spec.encoders, "w") is None:
        return f"{codec}: FFmpeg in this PyAV has no encoder {' / '.join(spec.encoders)}"
    if spec.decoders and av_pick(spec.decoders, "r") is None:
        return f"{codec}: FFmpeg in this PyAV has no decoder {' / '.join(spec.decoders)}"
    return None


def available_codecs(modality: str) -> dict[str, str | None]:
    """Every codec of ``modality`` → ``None`` if it runs here, else the reason it does not."""
    return {c: codec_unavailable_reason(c) for c in modality_codecs(modality)}


def require(codec: str) -> None:
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
    for codec, spec in (AUDIO_SPECS | VIDEO_SPECS).items():
        enc = av_pick(spec.encoders, "w")
        dec = av_pick(spec.decoders, "r") if spec.decoders else None
        encoders[codec] = {
            "encoder": enc,
            "encoder_long_name": av_codec(enc, "w").long_name if enc else None,
            "decoder": dec or "ffmpeg default",
            "container": spec.container,
            "options": dict(spec.options),
        }
    out["av_codecs"] = encoders
    out["image_options"] = {k: dict(v) for k, v in IMAGE_OPTIONS.items()}
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


def setting_text(codec: str, value: float) -> str:
    v = float(value)
    return f"{SETTING_NAMES[codec]}={int(v) if v.is_integer() else v:g}"


def settings_for(codec: str, settings: Iterable[float] | None) -> list[float]:
    values = list(DEFAULT_SETTINGS[codec] if settings is None else settings)
    if not values:
        raise ConfigError(f"{codec}: the list of settings is empty")
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise ConfigError(f"{codec}: setting {v!r} is not a number")
    return values


@dataclass
class Item:
    """One evaluation item read from a file (an image, a clip, one sphere field)."""

    name: str
    data: np.ndarray
    sample_rate: int | None = None
    fps: float | None = None


@dataclass(frozen=True)
class Limits:
    """How much of each file the codecs see: the paper's first 3 s of speech, 24 frames of 128×128 video."""

    max_seconds: float | None = None
    max_frames: int | None = None
    frame_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Runner:
    """A modality's files as the arrays its standard codecs take (``load``), and one codec on one of them."""

    load: Callable[[Path, Limits], list[Item]]
    run: Callable[[Item, str, Iterable[float] | None, bool], list[CodecRun]]
