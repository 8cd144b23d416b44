"""One rate–distortion point: a codec at one setting, on one file or averaged over several.

Apart from :mod:`vcinr.evaluate.results` (which writes points to JSON together with the
versions of the codecs that made them) so that the codecs can make points without
importing the results writer back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from vcinr.errors import InputError


@dataclass(frozen=True)
class RDPoint:
    """One rate–distortion point.

    Attributes:
        modality: ``"image"``, ``"audio"``, ``"video"`` or ``"sphere"``.
        codec: a standard codec's name (:attr:`vcinr.modalities.base.Modality.codecs`) or ``"vcinr-..."``.
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


__all__ = ["RDPoint"]
