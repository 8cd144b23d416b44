"""The results JSON that rate–distortion points are written to.

One :class:`~vcinr.evaluate.points.RDPoint` is one codec at one setting, on one file or
averaged over several (``num_files``).  :func:`write_results` writes every point together with the settings of the
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vcinr.errors import InputError
from vcinr.evaluate.baselines import codec_versions as current_versions
from vcinr.evaluate.points import RDPoint
from vcinr.modalities.common import writing

RESULTS_FORMAT = "vcinr-rd-results"
RESULTS_VERSION = 1


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


__all__ = ["RESULTS_FORMAT", "load_results", "write_results"]
