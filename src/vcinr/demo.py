"""``vcinr demo``: the quick start — the bundled models on bundled files they never saw.

Three samples ship in ``vcinr/samples/demo/`` (see the README there): a 384×256 crop of
Kodak kodim20, the first 4 s of a LibriSpeech test-other utterance and one ERA5 2 m
temperature grid, all held out from the bundled models' training data (docs/models.md).
Each is compressed at two quality levels with the bundled model of its modality, decoded
again, and the PSNR that ``compress`` reported is checked against the PSNR of the decoded
file (a mismatch is an error).  The modality's standard codecs run on the same file.

The report folder (``--out``, default ``demo-report/``) gets ``report.md`` and
``report.json`` (bytes, bpp or kbps, PSNR and times per file and level, with the anchor codec
— JPEG or MP3 — at the nearest rate beside it), an RD plot per modality, reconstruction
images, a spectrogram of the audio and ``files/`` with every ``.vci`` and its decode.

``vcinr demo --train`` instead meta-trains a tiny VC-INR on bundled CIFAR-10 samples and
reports the PSNR after three inner steps before and after meta-learning.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from vcinr.bundled import model_for_input
from vcinr.codec.levels import list_levels
from vcinr.errors import VcinrError
from vcinr.evaluate.baselines import encode_image, evaluate_baselines, nearest_point, sphere_to_uint8
from vcinr.evaluate.harness import DEFAULT_ANCHOR
from vcinr.evaluate.metrics import unit_to_int16
from vcinr.evaluate.plots import Curve, curves_from_points, rd_plot, reconstruction_grid, spectrogram_figure
from vcinr.evaluate.results import RDPoint
from vcinr.meta.model import load_model
from vcinr.modalities import read_signal
from vcinr.pipeline import compress_file, decompress_file, signal_quality

SAMPLES = Path(str(resources.files("vcinr") / "samples"))
DEMO_FILES = ("kodim20-crop.png", "533-1066-0001-4s.flac", "era5-t2m-1000.npz")
CODECS = {"image": ("jpeg", "webp"), "audio": ("mp3",), "sphere": ("jpeg", "webp")}
ROUND_TRIP_TOLERANCE_DB = 1e-6


@dataclass
class DemoRow:
    """One sample at one quality level, and the anchor codec at the nearest rate."""

    file: str
    modality: str
    model: str
    quality: str
    bytes: int
    rate: float
    rate_unit: str  # "bpp" or "kbps"
    psnr: float  # what compress printed
    decoded_psnr: float  # measured on the file decompress wrote
    encode_seconds: float
    decode_seconds: float
    anchor: str
    anchor_setting: str | None
    anchor_rate: float | None
    anchor_psnr: float | None


def demo_levels(model_dir: Path) -> list[str]:
    """The lowest and highest learned quality levels (all levels when there are fewer than two)."""
    levels = list_levels(load_model(model_dir))
    learned = [lv.name for lv in levels if lv.kind == "learned"] or [lv.name for lv in levels]
    return learned if len(learned) <= 2 else [learned[0], learned[-1]]


def _round_trip(sample: Path, model_dir: Path, quality: str, files: Path) -> tuple[DemoRow, Path]:
    """Compress and decompress ``sample``; the PSNR printed must be that of the decoded file."""
    vci = files / f"{sample.stem}-q{quality}.vci"
    decoded = files / f"{sample.stem}-q{quality}{sample.suffix}"
    report = compress_file(sample, model_dir, quality, vci)
    print(f"  compress   {report.summary()}")
    back = decompress_file(vci, model_dir, decoded)
    print(f"  decompress {back.summary()}")
    original = read_signal(sample, report.modality)
    _, measured = signal_quality(original, read_signal(decoded, report.modality))
    if not math.isclose(measured, report.value, rel_tol=0, abs_tol=ROUND_TRIP_TOLERANCE_DB):
        raise VcinrError(f"round trip of {sample.name} at quality {quality}: compress reported PSNR "
                         f"{report.value:.6f} dB but the decoded file has {measured:.6f} dB")
    rate_unit = "kbps" if report.kbps is not None else "bpp"
    row = DemoRow(sample.name, report.modality, model_dir.name, report.quality, report.bytes,
                  report.kbps if report.kbps is not None else report.bpp, rate_unit, report.value, measured,
                  report.seconds, back.seconds, DEFAULT_ANCHOR[report.modality], None, None, None)
    return row, decoded


def _vcinr_points(rows: list[DemoRow]) -> list[RDPoint]:
    return [RDPoint(modality=r.modality, codec="vcinr (bundled)", setting=f"quality={r.quality}", value=float(i),
                    bytes=float(r.bytes), psnr=r.psnr, bpp=r.rate if r.rate_unit == "bpp" else None,
                    kbps=r.rate if r.rate_unit == "kbps" else None) for i, r in enumerate(rows)]


def _figures(sample: Path, modality: str, rows: list[DemoRow], decoded: list[Path], anchor: RDPoint | None,
             out: Path) -> list[Path]:
    """Reconstructions beside the original: images and ERA5 grids as pictures, audio as spectrograms."""
    original = read_signal(sample, modality).features.numpy()
    recs = {f"q{r.quality.split()[0]} {r.rate:.3g} {r.rate_unit}": read_signal(d, modality).features.numpy()
            for r, d in zip(rows, decoded)}
    if modality == "audio":
        recs = {label: unit_to_int16(x) for label, x in recs.items()}
        rate = int(read_signal(sample, modality).meta["sample_rate"])
        return [spectrogram_figure(unit_to_int16(original), recs, rate, out / "spectrograms-audio.png")]
    if modality == "image":
        pixels = np.rint(original * 255.0).astype(np.uint8)
        recs = {label: np.rint(x * 255.0).astype(np.uint8) for label, x in recs.items()}
        if anchor is not None:
            recs[f"{anchor.codec} {anchor.rate:.3g} bpp"] = encode_image(pixels, anchor.codec, anchor.value)[1]
        return [reconstruction_grid(pixels, recs, out / "reconstructions-image.png")]
    field = original[..., 0]
    grids = {label: x[..., 0] for label, x in recs.items()}
    if anchor is not None:
        coded = encode_image(sphere_to_uint8(field), anchor.codec, anchor.value)[1]
        grids[f"{anchor.codec} {anchor.rate:.3g} bpp"] = coded.astype(np.float64) / 255.0
    return [reconstruction_grid(field, grids, out / f"reconstructions-{modality}.png")]


def _markdown(rows: list[DemoRow], seconds: float) -> str:
    lines = ["# vcinr demo", "",
             "Bundled models (docs/models.md) on bundled samples none of them was trained on. "
             "Rates come from the bytes written (header included); PSNR is measured on the decoded file "
             "and equals what `compress` printed. The anchor codec is shown at the rate nearest to each level.",
             "",
             "| file | model | quality | bytes | rate | PSNR (dB) | encode s | decode s | anchor at nearest rate |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        anchor = (f"{r.anchor} {r.anchor_setting}: {r.anchor_rate:.3f} {r.rate_unit}, {r.anchor_psnr:.2f} dB"
                  if r.anchor_rate is not None else f"{r.anchor} unavailable")
        lines.append(f"| {r.file} | {r.model} | {r.quality} | {r.bytes} | {r.rate:.3f} {r.rate_unit} | {r.psnr:.2f} | "
                     f"{r.encode_seconds:.2f} | {r.decode_seconds:.2f} | {anchor} |")
    lines += ["", f"Whole demo: {seconds:.0f} s.", ""]
    return "\n".join(lines)


def run_demo(out: Path, samples: tuple[str, ...] = DEMO_FILES) -> list[DemoRow]:
    """Round-trip every sample with the bundled models, run the baselines, write the report."""
    started = time.perf_counter()
    files = out / "files"
    files.mkdir(parents=True, exist_ok=True)
    rows: list[DemoRow] = []
    written: list[Path] = []
    for name in samples:
        sample = SAMPLES / "demo" / name
        bundled = model_for_input(sample)
        print(f"{sample.name}: bundled {bundled.modality} model '{bundled.name}'")
        pairs = [_round_trip(sample, bundled.directory, q, files) for q in demo_levels(bundled.directory)]
        sample_rows, decoded = [p[0] for p in pairs], [p[1] for p in pairs]
        modality = sample_rows[0].modality
        baselines = evaluate_baselines([sample], modality, CODECS[modality], ms_ssim=False)
        for row in sample_rows:
            near = nearest_point(baselines, row.rate, row.anchor)
            if near is not None:
                row.anchor_setting, row.anchor_rate, row.anchor_psnr = near.setting, near.rate, near.psnr
        unit = sample_rows[0].rate_unit
        curves = curves_from_points(_vcinr_points(sample_rows), kind="vcinr") + curves_from_points(baselines)
        written.append(rd_plot(curves, out / f"rd-{modality}.png", rate_unit=unit, log_x=True,
                               title=f"{sample.name}: bundled model '{bundled.name}'"))
        lowest = nearest_point(baselines, sample_rows[0].rate, sample_rows[0].anchor)
        written += _figures(sample, modality, sample_rows, decoded, lowest, out)
        rows += sample_rows
    seconds = time.perf_counter() - started
    (out / "report.md").write_text(_markdown(rows, seconds))
    (out / "report.json").write_text(json.dumps({"seconds": seconds, "rows": [asdict(r) for r in rows]}, indent=2))
    print(_markdown(rows, seconds))
    print(f"wrote {out / 'report.md'}, {out / 'report.json'}, {', '.join(p.name for p in written)} and {files}/")
    return rows


def run_train_demo(out: Path, quick: bool = False) -> None:
    """Meta-train a tiny VC-INR on bundled CIFAR-10 samples (the ``demo`` preset)."""
    from vcinr.config import load_config
    from vcinr.meta.training import train

    overrides = {"data.path": str(SAMPLES / "cifar10")}
    if quick:
        overrides.update({"train.steps": 20, "train.eval_every": 20, "train.eval_items": 32})
    config = load_config("demo", overrides)
    print(f"meta-training a tiny VC-INR ({config.train.steps} steps) on bundled CIFAR-10 samples -> {out}")
    result = train(config, out / "model")
    k = config.meta.inner_steps
    print(f"test PSNR after {k} inner steps: {result.initial['psnr']:.2f} dB untrained -> "
          f"{result.final['psnr']:.2f} dB meta-learned ({result.seconds:.0f} s)")
