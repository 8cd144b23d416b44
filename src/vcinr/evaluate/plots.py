"""Figures: rate–distortion curves, reconstruction grids and audio spectrograms (PNG).

Figures are drawn on matplotlib's Agg canvas directly (no ``pyplot``, no global backend
change) and saved without ``bbox_inches="tight"``, so a PNG is exactly
``figsize × dpi`` pixels:

* :func:`rd_plot`: ``figsize`` (default 6.4 × 4.8 in) → 640 × 480 at dpi 100.
* :func:`reconstruction_grid`: ``(1 + n)`` columns × 2 rows of ``panel`` inches (default 2.5).
* :func:`spectrogram_figure`: ``width`` inches (default 8) × ``(1 + n)·row_height`` inches.

Curve styles: standard codecs dashed, vcinr solid, published reference curves dotted with
"(published)" in the legend.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcinr.errors import ConfigError, InputError
from vcinr.evaluate import metrics
from vcinr.evaluate.points import RDPoint
from vcinr.modalities.common import writing

KINDS = ("codec", "vcinr", "published")
_STYLE = {
    "codec": {"linestyle": "--", "marker": "o", "markersize": 3, "linewidth": 1.2},
    "vcinr": {"linestyle": "-", "marker": "s", "markersize": 4, "linewidth": 2.0},
    "published": {"linestyle": ":", "marker": "^", "markersize": 4, "linewidth": 1.8},
}


@dataclass
class Curve:
    """A labelled RD curve; ``kind`` is ``"codec"``, ``"vcinr"`` or ``"published"``."""

    label: str
    rates: Sequence[float]
    values: Sequence[float]
    kind: str = "codec"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown curve kind {self.kind!r} (known: {', '.join(KINDS)})")
        if len(self.rates) != len(self.values):
            raise InputError(f"curve {self.label!r}: {len(self.rates)} rates but {len(self.values)} values")

    @property
    def legend(self) -> str:
        return f"{self.label} (published)" if self.kind == "published" and "published" not in self.label else self.label


def curves_from_points(points: Iterable[RDPoint], kind: str = "codec", metric: str = "psnr",
                       label_prefix: str = "") -> list[Curve]:
    """One curve per codec, points sorted by rate; ``metric`` is ``"psnr"`` or ``"ms_ssim"``."""
    groups: dict[str, list[RDPoint]] = {}
    for p in points:
        groups.setdefault(p.codec, []).append(p)
    curves = []
    for codec, ps in groups.items():
        ps = sorted((p for p in ps if getattr(p, metric) is not None and p.rate is not None), key=lambda p: p.rate)
        if ps:
            curves.append(Curve(f"{label_prefix}{codec}", [p.rate for p in ps], [getattr(p, metric) for p in ps], kind))
    return curves


def reference_curve(ref) -> Curve:
    """A :class:`~vcinr.evaluate.reference.ReferenceCurve` as a dotted "published" curve."""
    return Curve(ref.method, list(ref.rate), list(ref.psnr), "published")


def _figure(figsize: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png: str | Path, dpi: int) -> Path:
    path = Path(out_png)
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: figures are written as .png")
    with writing(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def rd_plot(
    curves: Iterable[Curve],
    out_png: str | Path,
    *,
    rate_unit: str = "bpp",
    metric: str = "PSNR (dB)",
    title: str | None = None,
    log_x: bool = False,
    figsize: tuple[float, float] = (6.4, 4.8),
    dpi: int = 100,
) -> Path:
    """Rate on x, quality on y, one line per curve; writes ``out_png`` and returns its path."""
    curves = list(curves)
    if not curves:
        raise InputError("nothing to plot: no curves")
    fig = _figure(figsize)
    ax = fig.add_subplot(1, 1, 1)
    for curve in curves:
        order = np.argsort(np.asarray(curve.rates, dtype=float), kind="stable")
        x = np.asarray(curve.rates, dtype=float)[order]
        y = np.asarray(curve.values, dtype=float)[order]
        ax.plot(x, y, label=curve.legend, **_STYLE[curve.kind])
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(rate_unit)
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _save(fig, out_png, dpi)


def _display(image) -> np.ndarray:
    a = metrics.as_unit_range(image)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise InputError(f"expected an (H, W) or (H, W, 3) image, got shape {a.shape}")
    return np.clip(a, 0.0, 1.0)


def reconstruction_grid(
    original,
    reconstructions: Mapping[str, object],
    out_png: str | Path,
    *,
    panel: float = 2.5,
    dpi: int = 100,
) -> Path:
    """Original and each reconstruction (titled with its label and PSNR) on the top row; the
    absolute error of each reconstruction (mean over channels, one shared colour scale) below.

    Typical use: ``{"vcinr 0.52 bpp": rec, "JPEG 0.55 bpp": jpeg_rec}``.  Images are uint8 or
    float in ``[0, 1]``, ``(H, W)`` or ``(H, W, 3)``.
    """
    if not reconstructions:
        raise InputError("reconstruction_grid needs at least one reconstruction")
    ref = _display(original)
    recs = {label: _display(r) for label, r in reconstructions.items()}
    for label, r in recs.items():
        if r.shape != ref.shape:
            raise InputError(f"reconstruction {label!r} has shape {r.shape}, the original {ref.shape}")
    cols = 1 + len(recs)
    fig = _figure((cols * panel, 2 * panel))
    errors = {label: np.abs(r - ref).mean(axis=-1) if r.ndim == 3 else np.abs(r - ref) for label, r in recs.items()}
    vmax = max(max(float(e.max()) for e in errors.values()), 1e-6)
    cmap = "gray" if ref.ndim == 2 else None
    ax = fig.add_subplot(2, cols, 1)
    ax.imshow(ref, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_title("original", fontsize="small")
    ax.axis("off")
    fig.add_subplot(2, cols, cols + 1).axis("off")
    image = None
    for i, (label, r) in enumerate(recs.items(), start=2):
        ax = fig.add_subplot(2, cols, i)
        ax.imshow(r, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{label}\n{metrics.psnr(ref, r):.2f} dB", fontsize="small")
        ax.axis("off")
        ax = fig.add_subplot(2, cols, cols + i)
        image = ax.imshow(errors[label], cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"|error| {label}", fontsize="x-small")
        ax.axis("off")
    fig.subplots_adjust(left=0.02, right=0.9, bottom=0.03, top=0.9, wspace=0.08, hspace=0.3)
    if image is not None:
        fig.colorbar(image, cax=fig.add_axes((0.92, 0.06, 0.015, 0.36)))
    return _save(fig, out_png, dpi)


def _mono(samples) -> np.ndarray:
    a = np.asarray(samples)
    if a.dtype == np.int16:
        a = a.astype(np.float64) / 32768.0
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    else:
        raise InputError(f"audio must be int16 samples or float in [-1, 1], got {a.dtype}")
    if a.ndim == 2:
        a = a.mean(axis=1)
    if a.ndim != 1 or a.size == 0:
        raise InputError(f"audio must be (T,) or (T, channels), got shape {np.shape(samples)}")
    return a


def spectrogram_figure(
    original,
    reconstructions: Mapping[str, object],
    sample_rate: int,
    out_png: str | Path,
    *,
    width: float = 8.0,
    row_height: float = 2.0,
    dpi: int = 100,
    n_fft: int = 512,
) -> Path:
    """Log-magnitude spectrograms (dB, one shared colour scale) of the original and each
    reconstruction, one row each; rows are titled with the label and PSNR.

    Audio is int16 (scaled by 1/32768) or float in ``[-1, 1]``; channels are averaged.
    """
    if not reconstructions:
        raise InputError("spectrogram_figure needs at least one reconstruction")
    if sample_rate <= 0:
        raise InputError(f"the sample rate must be positive, got {sample_rate}")
    rows = {"original": _mono(original)}
    titles = {"original": "original"}
    for label, r in reconstructions.items():
        rows[label] = _mono(r)
        if rows[label].shape != rows["original"].shape:
            raise InputError(f"reconstruction {label!r} has {rows[label].size} samples, "
                             f"the original {rows['original'].size}")
        score = metrics.psnr(original, r) if np.asarray(original).dtype == np.asarray(r).dtype == np.int16 else None
        titles[label] = f"{label}" + (f" — {score:.2f} dB" if score is not None else "")
    n = min(n_fft, rows["original"].size)
    hop = max(1, n // 4)
    window = np.hanning(n)

    def stft_db(x: np.ndarray) -> np.ndarray:
        frames = max(1, 1 + (x.size - n) // hop)
        idx = np.arange(n)[None, :] + hop * np.arange(frames)[:, None]
        spec = np.abs(np.fft.rfft(x[idx] * window, axis=1)) ** 2
        return 10.0 * np.log10(spec.T + 1e-12)

    specs = {label: stft_db(x) for label, x in rows.items()}
    vmax = max(float(s.max()) for s in specs.values())
    vmin = vmax - 100.0
    duration = rows["original"].size / sample_rate
    fig = _figure((width, row_height * len(rows)))
    image = None
    for i, (label, spec) in enumerate(specs.items(), start=1):
        ax = fig.add_subplot(len(rows), 1, i)
        image = ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=vmin, vmax=vmax,
                          extent=(0.0, duration, 0.0, sample_rate / 2000.0))
        ax.set_title(titles[label], fontsize="small")
        ax.set_ylabel("kHz")
        if i == len(rows):
            ax.set_xlabel("s")
    fig.subplots_adjust(left=0.08, right=0.86, bottom=0.5 / fig.get_figheight(), top=1 - 0.3 / fig.get_figheight(),
                        hspace=0.7)
    if image is not None:
        fig.colorbar(image, cax=fig.add_axes((0.89, 0.15, 0.015, 0.7)), label="dB")
    return _save(fig, out_png, dpi)


__all__ = ["Curve", "KINDS", "curves_from_points", "rd_plot", "reconstruction_grid", "reference_curve",
           "spectrogram_figure"]
