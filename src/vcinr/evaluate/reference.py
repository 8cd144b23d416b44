"""Published rate–distortion curves (``reference_curves.json``): the paper's own numbers.

These are **published figures, not measurements**: VC-INR's appendix B lists the values its
section 4 plots were drawn from, copied here verbatim (see ``docs/reference_curves.md``).
Every curve carries ``kind == "published"`` and its ``source``; plots draw them dotted and
label them "(published)".  COIN++'s numbers are not in the project's papers folder, so the
file holds a documented empty slot for them (``missing``) rather than invented values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from vcinr.errors import ConfigError, InputError

REFERENCE_FILE = Path(__file__).with_name("reference_curves.json")
_ALIASES = {"cifar": "cifar10", "ucf": "ucf101", "libri": "librispeech", "era5temp": "era5"}


@dataclass(frozen=True)
class ReferenceCurve:
    """One published curve: ``rate`` (in ``rate_unit``) and ``psnr`` (dB), point for point."""

    dataset: str
    method: str
    kind: str
    source: str
    rate_unit: str
    rate: tuple[float, ...]
    psnr: tuple[float, ...]
    notes: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        return f"{self.method} ({self.kind})"


def normalise_dataset(name: str) -> str:
    """``"CIFAR-10"`` → ``"cifar10"``, ``"UCF-101"`` → ``"ucf101"``, ``"ERA-5"`` → ``"era5"``."""
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    return _ALIASES.get(key, key)


@lru_cache(maxsize=4)
def _load(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the reference curves ({' '.join(str(exc).split())})") from None
    if document.get("format") != "vcinr-reference-curves":
        raise InputError(f"{path}: not a reference-curves file")
    return document


def reference_datasets(path: str | Path | None = None) -> list[str]:
    """Datasets that have at least one published curve."""
    document = _load(Path(path) if path else REFERENCE_FILE)
    return list(dict.fromkeys(c["dataset"] for c in document["curves"]))


def load_reference_curves(dataset: str, method: str | None = None,
                          path: str | Path | None = None) -> list[ReferenceCurve]:
    """Published curves for ``dataset`` (``"cifar10"``, ``"kodak"``, ``"era5"``, ``"librispeech"``,
    ``"ucf101"``; spellings like ``"CIFAR-10"`` work), optionally only those of ``method``.

    Raises :class:`~vcinr.errors.ConfigError` for a dataset with no published curves.
    """
    document = _load(Path(path) if path else REFERENCE_FILE)
    key = normalise_dataset(dataset)
    curves = []
    for c in document["curves"]:
        if c["dataset"] != key or (method is not None and c["method"].lower() != method.lower()):
            continue
        notes = {k: v for k, v in c.items()
                 if k not in {"dataset", "method", "kind", "source", "rate_unit", "rate", "psnr"}}
        curves.append(ReferenceCurve(c["dataset"], c["method"], c["kind"], c["source"], c["rate_unit"],
                                     tuple(float(x) for x in c["rate"]), tuple(float(x) for x in c["psnr"]), notes))
    if not curves:
        known = ", ".join(dict.fromkeys(c["dataset"] for c in document["curves"]))
        what = f" for method {method!r}" if method else ""
        raise ConfigError(f"no published reference curve for dataset {dataset!r}{what} (known: {known})")
    return curves


def missing_reference_curves(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The documented empty slots (e.g. COIN++), with why they are empty and how to fill them."""
    return list(_load(Path(path) if path else REFERENCE_FILE).get("missing", []))


__all__ = ["REFERENCE_FILE", "ReferenceCurve", "load_reference_curves", "missing_reference_curves",
           "normalise_dataset", "reference_datasets"]
