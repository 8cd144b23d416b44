"""``vcinr eval``: RD curves of a model's quality levels against standard codecs on the same files.

For every quality level of the model (learned transform coders and uniform quantisers) each
input file goes through the real ``compress`` path: the rate is the size of the ``.vci`` file
written, header included, and the quality is measured on what ``decompress`` produces.  The
standard codecs of the modality run on the same files (:mod:`vcinr.evaluate.baselines`).
Everything lands in one JSON (all points, BD-rates against an anchor codec, settings and codec
versions) and an RD plot.

Inputs are files or directories of the model's modality.  Dataset containers are unpacked
into single files first by the modality (:meth:`vcinr.modalities.base.Modality.unpack`), so
every codec sees exactly the same data: an ``.npz`` holding an ``images`` array (the CIFAR-10
layout) becomes PNG files, and a sphere ``.npz`` holding several fields one file per field.
Everything else that depends on the modality — its standard codecs and their anchor, its
rate unit, whether an SNR means anything — comes from its plug-in too.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from vcinr.codec.levels import list_levels
from vcinr.errors import InputError
from vcinr.evaluate.baselines import canonical_codec, evaluate_baselines
from vcinr.evaluate.bdrate import bd_psnr, bd_rate
from vcinr.evaluate.plots import curves_from_points, rd_plot, reference_curve
from vcinr.evaluate.reference import load_reference_curves, reference_datasets
from vcinr.evaluate.points import RDPoint
from vcinr.evaluate.results import write_results
from vcinr.meta.model import load_model
from vcinr.modalities import get_modality


@dataclass
class EvalOutcome:
    json_path: Path
    plot_path: Path
    points: list[RDPoint]
    bd: dict[str, dict[str, Any]]
    snr_offset: float | None = None  # audio: mean SNR − PSNR over the files (their power in dB)


def collect_inputs(inputs: Sequence[str | Path], modality: str, folder: Path, limit: int | None) -> list[Path]:
    """Expand directories and dataset containers into at most ``limit`` files of ``modality``."""
    plugin = get_modality(modality)
    files: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for candidate in candidates:
            unpacked = plugin.unpack(candidate, folder, None if limit is None else limit - len(files))
            if unpacked is not None:
                files.extend(unpacked)
            elif candidate.suffix.lower() in plugin.suffixes:
                files.append(candidate)
            else:
                continue
            if limit is not None and len(files) >= limit:
                return files[:limit]
    if not files:
        raise InputError(f"no {modality} files among {', '.join(str(i) for i in inputs)}")
    return files


def vcinr_points(model_dir: Path, files: list[Path], qualities: Sequence[str] | None, workdir: Path,
                 progress: bool = True, effort: int | None = None) -> list[RDPoint]:
    """One averaged RD point per quality level, from real ``.vci`` files and their decodes.

    ``effort``: steps of the encoder's rate–distortion search (``None``: ``compress``'s default).
    """
    from vcinr.codec.search import SearchSettings
    from vcinr.evaluate.baselines import average_points
    from vcinr.pipeline import compress_file

    loaded = load_model(model_dir)
    levels = [lv for lv in list_levels(loaded) if qualities is None or lv.name in qualities or lv.stem in qualities]
    if not levels:
        raise InputError(f"{model_dir} has no quality levels{' named ' + ', '.join(qualities) if qualities else ''}; "
                         "run 'vcinr fit-codec' first")
    per_file: list[list[RDPoint]] = []
    jobs = tqdm(files, desc="vcinr", unit="file", disable=not progress)
    for index, path in enumerate(jobs):
        points = []
        for level in levels:
            report = compress_file(path, model_dir, level.name, workdir / f"{index}_{level.stem}.vci",
                                   search=SearchSettings() if effort is None else SearchSettings(steps=effort))
            codec = f"vcinr-{level.kind}"
            points.append(RDPoint(
                modality=loaded.spec.modality, codec=codec, setting=f"quality={level.name}",
                value=float(len(points)), bytes=float(report.bytes),
                psnr=report.value if report.metric == "psnr" else float("nan"),
                bpp=None if report.kbps is not None else report.bpp, kbps=report.kbps,
            ))
            report.output.unlink()
        per_file.append(points)
    return average_points(per_file)


def _snr_offset(files: Sequence[Path], modality: str) -> float:
    """Mean over ``files`` of their power in dB: the mean per-file SNR of any point is its PSNR plus this."""
    from vcinr.evaluate.metrics import audio_power_db
    from vcinr.modalities import read_signal

    centre = get_modality(modality).snr_centre
    return float(np.mean([audio_power_db(read_signal(f, modality).features.numpy(), centre) for f in files]))


def bd_table(points: Sequence[RDPoint], anchor: str) -> dict[str, dict[str, Any]]:
    """BD-rate (%) and BD-PSNR (dB) of every curve against ``anchor``."""
    curves = {c.label: c for c in curves_from_points(points)}
    if anchor not in curves:
        return {}
    a = curves[anchor]
    table = {}
    for label, c in curves.items():
        if label == anchor:
            continue
        rate, psnr = bd_rate(a.rates, a.values, c.rates, c.values), bd_psnr(a.rates, a.values, c.rates, c.values)
        table[label] = {"bd_rate_percent": rate.value, "bd_psnr_db": psnr.value,
                        "note": rate.reason or psnr.reason}
    return table


def run_eval(model_dir: str | Path, inputs: Sequence[str | Path], out_dir: str | Path, *,
             codecs: Sequence[str] | None = None, anchor: str | None = None,
             qualities: Sequence[str] | None = None, max_files: int | None = None,
             reference: str | None = None, ms_ssim: bool = False, progress: bool = True,
             effort: int | None = None) -> EvalOutcome:
    """Evaluate ``model_dir`` and standard codecs on ``inputs``; write ``rd.json`` and ``rd.png``."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    loaded = load_model(model_dir)
    modality = loaded.spec.modality
    plugin = get_modality(modality)
    anchor = anchor or (plugin.codecs[0] if plugin.codecs else None)
    # Names are checked before the minutes of model work; an empty list means the model alone.
    codecs = None if codecs is None else [canonical_codec(c, modality) for c in codecs]
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vcinr-eval-") as tmp:
        files = collect_inputs(inputs, modality, Path(tmp), max_files)
        points = vcinr_points(model_dir, files, qualities, Path(tmp), progress, effort)
        snr_offset = _snr_offset(files, modality) if plugin.snr_centre is not None else None
        baselines: list[RDPoint] = []
        skipped: dict[str, str] = {}
        if plugin.codecs and codecs != []:
            # The paper evaluates audio on the first 3 s of each clip; the model's patches see the same.
            result = evaluate_baselines(files, modality, codecs, ms_ssim=ms_ssim, progress=progress)
            baselines, skipped = list(result), dict(result.skipped)
    points = points + baselines
    bd = bd_table(points, anchor) if anchor else {}
    unit = points[0].rate_unit
    curves = curves_from_points([p for p in points if p.codec.startswith("vcinr")], kind="vcinr")
    curves += curves_from_points(baselines)
    if reference:
        if reference not in reference_datasets():
            raise InputError(f"no published curves for {reference!r} (known: {', '.join(reference_datasets())})")
        curves += [reference_curve(r) for r in load_reference_curves(reference)]
    plot_path = rd_plot(curves, out_dir / "rd.png", rate_unit=unit,
                        title=f"{loaded.directory.name}: {len(files)} {modality} files", log_x=True)
    settings = {"model": str(model_dir), "model_fingerprint": loaded.fingerprint, "inputs": [str(i) for i in inputs],
                "files": len(files), "anchor": anchor, "bd": bd, "reference": reference,
                "qualities": list(qualities) if qualities else "all", "effort": effort,
                "snr_offset_db": snr_offset}
    json_path = out_dir / "rd.json"
    write_results(json_path, points, settings, skipped=skipped)
    return EvalOutcome(json_path, plot_path, points, bd, snr_offset)


def format_table(outcome: EvalOutcome) -> str:
    """A plain-text summary: every point, then BD figures against the anchor."""
    snr = outcome.snr_offset
    lines = [f"{'codec':<16}{'setting':<20}{'rate':>10}  {'PSNR':>8}" + (f"  {'SNR':>8}" if snr is not None else "")]
    for p in sorted(outcome.points, key=lambda p: (p.codec, p.rate or 0)):
        lines.append(f"{p.codec:<16}{p.setting:<20}{p.rate:>10.4f}  {p.psnr:>8.2f}"
                     + (f"  {p.psnr + snr:>8.2f}" if snr is not None else ""))
    for label, row in outcome.bd.items():
        rate = "n/a" if row["bd_rate_percent"] is None else f"{row['bd_rate_percent']:+.1f}%"
        psnr = "n/a" if row["bd_psnr_db"] is None or math.isnan(row["bd_psnr_db"]) else f"{row['bd_psnr_db']:+.2f} dB"
        lines.append(f"BD vs anchor: {label:<16} rate {rate:>8}  PSNR {psnr}")
    return "\n".join(lines)
