"""Evaluation harness: metrics, standard-codec baselines, Bjøntegaard deltas, RD plots and the
paper's published reference curves.

Typical use::

    from vcinr.evaluate import evaluate_baselines, write_results, load_reference_curves
    points = evaluate_baselines(sorted(Path("kodak").glob("*.png")), "image", ["jpeg", "webp"])
    write_results("docs/results/kodak_baselines.json", points, {"dataset": "kodak"})

Submodules are imported lazily where they pull in heavy libraries (PyAV, matplotlib).
"""

from __future__ import annotations

from vcinr.evaluate.bdrate import BDResult, bd_psnr, bd_rate
from vcinr.evaluate.metrics import SSIMResult, as_unit_range, bpp, kbps, ms_ssim, mse, psnr, voxel_accuracy
from vcinr.evaluate.reference import ReferenceCurve, load_reference_curves, missing_reference_curves
from vcinr.evaluate.points import RDPoint
from vcinr.evaluate.results import load_results, write_results

_LAZY = {
    "CodecFailed": "baselines", "CodecRun": "baselines", "CodecUnavailable": "baselines",
    "RDPoints": "baselines", "available_codecs": "baselines", "codec_versions": "baselines",
    "evaluate_baselines": "baselines", "nearest_point": "baselines", "run_audio_codec": "baselines",
    "run_image_codec": "baselines", "run_sphere_codec": "baselines", "run_video_codec": "baselines",
    "Curve": "plots", "curves_from_points": "plots", "rd_plot": "plots", "reconstruction_grid": "plots",
    "reference_curve": "plots", "spectrogram_figure": "plots",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"vcinr.evaluate.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'vcinr.evaluate' has no attribute {name!r}")


__all__ = [
    "BDResult", "RDPoint", "ReferenceCurve", "SSIMResult", "as_unit_range", "bd_psnr", "bd_rate", "bpp", "kbps",
    "load_reference_curves", "load_results", "missing_reference_curves", "ms_ssim", "mse", "psnr",
    "voxel_accuracy", "write_results", *_LAZY,
]
