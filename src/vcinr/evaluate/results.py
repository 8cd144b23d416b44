"""Rate–distortion points and the results JSON they are written to.

One :class:`RDPoint` is one codec at one setting, on one file or averaged over several
(``num_files``).  :func:`write_results` writes every point together with the settings of the
run and the versions of the codec libraries; :func:`load_results` reads such a file back.

The JSON file (``"format": "vcinr-rd-results"``, ``"version": 1``)::

    {"format": ..., "version": 1, "created": ISO-8601 UTC,
     "settings": {...caller's settings...},
     "codec_versions": {...see baselines.codec_versions()...},
     "skipped": {"avif": "why", ...},
     "points": [{"modality", "codec", "setting", "value", "bytes", "bpp", "kbps", "psnr",
                 "ms_ssim", "ms_ssim_kind", "num_files", "lossless"}, ...]}

JSON has no infinity: an exact reconstruction's PSNR is written as ``null`` with
``"lossless": true`` and read back as ``inf``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vcinr.errors import InputError
from vcinr.modalities.common import writing

RESULTS_FORMAT = "vcinr-rd-results"
RESULTS_VERSION = 1


@dataclass(frozen=True)
class RDPoint:
    """One rate–distortion point.

    Attributes:
        modality: ``"image"``, ``"audio"``, ``"video"`` or ``"sphere"``.
        codec: codec name as in :data:`vcinr.evaluate.baselines.CODECS` (or ``"vcinr"``).
        setting: the swept parameter as text, e.g. ``"quality=75"``, ``"kbps=32"``, ``"crf=28"``.
        value: the swept parameter's numeric value.
        bytes: size of the complete file the codec wrote (mean over files when averaged).
        psnr: dB on the ``[0, 1]`` scale (mean of per-file PSNRs when averaged).
        bpp: ``8·bytes / points`` (images, video, sphere grids), else ``None``.
        kbps: ``8·bytes / seconds / 1000`` (audio), else ``None``.
        ms_ssim: MS-SSIM (images), else ``None``; ``ms_ssim_kind`` says which variant.
        num_files: how many files the point averages.
    """

    modality: str
    codec: str
    setting: str
    value: float
    bytes: float
    psnr: float
    bpp: float | None = None
    kbps: float | None = None
    ms_ssim: float | None = None
    ms_ssim_kind: str | None = None
    num_files: int = 1

    @property
    def rate(self) -> float:
        """The point's rate in its own unit (:attr:`rate_unit`)."""
        return self.kbps if self.kbps is not None else self.bpp

    @property
    def rate_unit(self) -> str:
        return "kbps" if self.kbps is not None else "bpp"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lossless"] = math.isinf(self.psnr)
        if not math.isfinite(self.psnr):
            d["psnr"] = None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RDPoint:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if values.get("psnr") is None:
            values["psnr"] = math.inf if d.get("lossless") else math.nan
        try:
            return cls(**values)
        except TypeError as exc:
            raise InputError(f"not a rate-distortion point ({exc})") from None


def _clean(value: Any) -> Any:
    """Make ``value`` strict JSON: non-finite floats become ``None``, tuples lists, paths text."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    return value


def write_results(
    json_path: str | Path,
    points: Iterable[RDPoint],
    settings: Mapping[str, Any],
    codec_versions: Mapping[str, Any] | None = None,
    skipped: Mapping[str, str] | None = None,
) -> Path:
    """Write ``points`` with ``settings`` and codec versions to one JSON file (atomically).

    ``codec_versions`` defaults to :func:`vcinr.evaluate.baselines.codec_versions` merged with
    the encoder tags the points' run found (``points.encoder_tags`` of the list
    :func:`~vcinr.evaluate.baselines.evaluate_baselines` returns); ``skipped`` defaults to
    ``points.skipped`` of that list.
    """
    from vcinr.evaluate.baselines import codec_versions as current_versions

    point_list = list(points)
    for p in point_list:
        if not isinstance(p, RDPoint):
            raise InputError(f"write_results needs RDPoint objects, got {type(p).__name__}")
    if codec_versions is None:
        codec_versions = current_versions()
        tags = getattr(points, "encoder_tags", None)
        if tags:
            codec_versions = dict(codec_versions, encoder_tags=dict(tags))
    if skipped is None:
        skipped = getattr(points, "skipped", None) or {}
    document = {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": _clean(dict(settings)),
        "codec_versions": _clean(dict(codec_versions)),
        "skipped": _clean(dict(skipped)),
        "points": [_clean(p.to_dict()) for p in point_list],
    }
    path = Path(json_path)
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    with writing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def load_results(json_path: str | Path) -> tuple[list[RDPoint], dict[str, Any]]:
    """Read a results file: its points and the rest of the document (settings, versions, ...)."""
    path = Path(json_path)
    if not path.is_file():
        raise InputError(f"{path}: no such results file")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable results file ({' '.join(str(exc).split())})") from None
    if not isinstance(document, dict) or document.get("format") != RESULTS_FORMAT:
        raise InputError(f"{path}: not a vcinr results file (no \"format\": \"{RESULTS_FORMAT}\")")
    if document.get("version") != RESULTS_VERSION:
        raise InputError(f"{path}: results version {document.get('version')!r} (this vcinr reads {RESULTS_VERSION})")
    points = [RDPoint.from_dict(p) for p in document.get("points", [])]
    rest = {k: v for k, v in document.items() if k != "points"}
    return points, rest


__all__ = ["RDPoint", "RESULTS_FORMAT", "load_results", "write_results"]
