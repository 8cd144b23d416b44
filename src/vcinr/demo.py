"""``vcinr demo``: the quick start — the bundled models on bundled files they never saw.

Three samples ship in ``vcinr/samples/demo/`` (see the README there): a 384×256 crop of
Kodak kodim20, the first 4 s of a LibriSpeech test-other utterance and one ERA5 2 m
temperature grid, all held out from the bundled models' training data (docs/models.md).
Each is compressed at two quality levels with the bundled model of its modality, decoded
again, and the PSNR that ``compress`` reported is checked against the PSNR of the decoded
file (a mismatch is an error).  The modality's standard codecs run on the same file.

The report folder (``--out``, default ``demo-report/``) gets ``report.md`` and
``report.json`` (bytes, bpp or kbps, PSNR — and SNR for audio — and times per file and level,
with the anchor codec — JPEG or MP3 — at the nearest rate and the strongest standard codec —
WebP or AVIF, Opus for speech — at about the same rate beside it), an RD plot per modality,
reconstruction images, a spectrogram of the audio and ``files/`` with every ``.vci`` and its
decode.  Audio PSNR is on a peak-to-peak range of 2 (features in ``[0, 1]``), which reads
some 30 dB higher than the waveform's SNR, so the SNR is given beside it.

``vcinr demo --train`` instead meta-trains a tiny VC-INR on bundled CIFAR-10 samples and
reports the PSNR after three inner steps before and after meta-learning.

Everything per modality comes from its plug-in (:class:`vcinr.modalities.base.Modality`): the
anchor and strongest standard codecs, the rate unit, whether an SNR applies (``snr_centre``);
the figure follows from the signal's shape: spectrograms for signals with a duration, pictures
of two-dimensional grids, none otherwise.
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
from vcinr.evaluate.baselines import evaluate_baselines, load_items, nearest_point, run_codec
from vcinr.evaluate.metrics import unit_to_int16
from vcinr.evaluate.plots import curves_from_points, rd_plot, reconstruction_grid, spectrogram_figure
from vcinr.evaluate.points import RDPoint
from vcinr.meta.model import load_model
from vcinr.modalities import Modality, get_modality, read_signal
from vcinr.pipeline import compress_file, decompress_file, signal_quality

SAMPLES = Path(str(resources.files("vcinr") / "samples"))
DEMO_FILES = ("kodim20-crop.png", "533-1066-0001-4s.flac", "era5-t2m-1000.npz")
RATE_WINDOW = 1.25  # "about the same rate": within a factor of 1.25 either way
ROUND_TRIP_TOLERANCE_DB = 1e-6


@dataclass
class CodecPoint:
    """A standard codec's point beside a level: which codec and setting, its rate and quality."""

    codec: str
    setting: str
    rate: float
    psnr: float
    snr: float | None  # where the modality has an snr_centre (audio)

    def text(self, unit: str) -> str:
        snr = f" (SNR {self.snr:.2f} dB)" if self.snr is not None else ""
        return f"{self.codec} {self.setting}: {self.rate:.3f} {unit}, {self.psnr:.2f} dB{snr}"


@dataclass
class DemoRow:
    """One sample at one quality level, with the anchor codec and the strongest codec beside it."""

    file: str
    modality: str
    model: str
    quality: str
    bytes: int
    rate: float
    rate_unit: str  # "bpp" or "kbps"
    psnr: float  # what compress printed
    decoded_psnr: float  # measured on the file decompress wrote
    snr: float | None  # SNR of the decoded signal where the modality has an snr_centre (audio)
    encode_seconds: float
    decode_seconds: float
    anchor: str
    anchor_point: CodecPoint | None = None  # the anchor (JPEG, MP3) at the nearest rate
    best_point: CodecPoint | None = None  # the best of the strong_codecs at about the same rate


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
    plugin = get_modality(report.modality)
    snr_offset = _snr_offset(original.features.numpy(), plugin)
    row = DemoRow(sample.name, report.modality, model_dir.name, report.quality, report.bytes,
                  report.kbps if report.kbps is not None else report.bpp, rate_unit, report.value, measured,
                  report.value + snr_offset if snr_offset is not None else None,
                  report.seconds, back.seconds, plugin.codecs[0])
    return row, decoded


def signal_power_db(features: np.ndarray, centre: float = 0.5) -> float:
    """``10·log10(mean((f − c)²))`` of features whose silence is ``c``: SNR = PSNR + this, for any reconstruction.

    Audio features are ``(x + 2**(B-1)) / (2**B - 1)`` (``c = ½`` is silence to within 2**-B),
    and PSNR is ``-10·log10(MSE)`` on them, so ``SNR = 10·log10(Σ(f − c)² / Σ(f − f̂)²)`` — the
    waveform's SNR — is PSNR plus the signal's power in dB.  The standard codecs' PSNR is
    measured the same way (:mod:`vcinr.evaluate.baselines`), so their SNR follows too.
    """
    power = float(np.mean(np.square(features.astype(np.float64) - centre)))
    return 10.0 * math.log10(power) if power > 0 else -math.inf


def _snr_offset(features: np.ndarray, plugin: Modality) -> float | None:
    """What turns a PSNR into an SNR for this signal, ``None`` where the modality has no SNR."""
    return signal_power_db(features, plugin.snr_centre) if plugin.snr_centre is not None else None


def demo_codecs(plugin: Modality) -> tuple[str, ...]:
    """The standard codecs the demo runs: the modality's anchor and its strongest codecs."""
    return tuple(dict.fromkeys(plugin.codecs[:1] + plugin.strong_codecs))


def _point(p: RDPoint, snr_offset: float | None) -> CodecPoint:
    return CodecPoint(p.codec, p.setting, float(p.rate), float(p.psnr),
                      p.psnr + snr_offset if snr_offset is not None else None)


def best_at_rate(points: list[RDPoint], rate: float, codecs: tuple[str, ...]) -> RDPoint | None:
    """The highest-PSNR point of ``codecs`` within a factor :data:`RATE_WINDOW` of ``rate``.

    When none of their settings comes that close, the point nearest in rate instead, so the
    strongest codec is always named (its rate says how far off it is).
    """
    mine = [p for p in points if p.codec in codecs and p.rate and p.rate > 0 and math.isfinite(p.psnr)]
    close = [p for p in mine if abs(math.log(p.rate / rate)) <= math.log(RATE_WINDOW)]
    if close:
        return max(close, key=lambda p: p.psnr)
    return nearest_point(mine, rate)


def _vcinr_points(rows: list[DemoRow]) -> list[RDPoint]:
    return [RDPoint(modality=r.modality, codec="vcinr (bundled)", setting=f"quality={r.quality}", value=float(i),
                    bytes=float(r.bytes), psnr=r.psnr, bpp=r.rate if r.rate_unit == "bpp" else None,
                    kbps=r.rate if r.rate_unit == "kbps" else None) for i, r in enumerate(rows)]


def _figures(sample: Path, modality: str, rows: list[DemoRow], decoded: list[Path], others: list[RDPoint],
             out: Path) -> list[Path]:
    """Reconstructions beside the original: spectrograms of a signal with a duration (audio), or
    pictures of a two-dimensional grid with the standard codecs ``others`` beside them; none otherwise."""
    signal = read_signal(sample, modality)
    original, grid = signal.features.numpy(), tuple(signal.features.shape[:-1])
    recs = {f"q{r.quality.split()[0]} {r.rate:.3g} {r.rate_unit}": read_signal(d, modality).features.numpy()
            for r, d in zip(rows, decoded)}
    duration = get_modality(modality).duration(signal.meta, grid)
    if duration is not None:
        recs = {label: unit_to_int16(x) for label, x in recs.items()}
        rate = round(grid[0] / duration)
        return [spectrogram_figure(unit_to_int16(original), recs, rate, out / f"spectrograms-{modality}.png")]
    if len(grid) != 2:
        return []
    item = load_items([sample], modality)[0]  # as the standard codecs take it
    for other in others:
        coded = run_codec(item, modality, other.codec, [other.value], with_ms_ssim=False)[0].reconstruction
        recs[f"{other.codec} {other.rate:.3g} {rows[0].rate_unit}"] = coded
    return [reconstruction_grid(original, recs, out / f"reconstructions-{modality}.png")]


def _rate_order_notes(rows: list[DemoRow]) -> list[str]:
    """A line for each file whose higher quality level came out *smaller* than a lower one."""
    notes = []
    for file in dict.fromkeys(r.file for r in rows):
        levels = [r for r in rows if r.file == file]
        for low, high in zip(levels, levels[1:]):
            if high.bytes < low.bytes:
                notes.append(f"* {file}: quality {high.quality.split()[0]} is smaller than quality "
                             f"{low.quality.split()[0]} here ({high.bytes} B against {low.bytes} B). Levels are "
                             "numbered by increasing λ; the rate usually, not always, rises with λ (docs/codec.md).")
    return notes


def _markdown(rows: list[DemoRow], seconds: float) -> str:
    lines = ["# vcinr demo", "",
             "Bundled models (docs/models.md) on bundled samples none of them was trained on. "
             "Rates come from the bytes written (header included); PSNR is measured on the decoded file "
             "and equals what `compress` printed. Beside each level: the anchor codec (JPEG, MP3) at the "
             "nearest rate, and the strongest standard codec (the best of WebP and AVIF; Opus for speech) "
             f"at about the same rate: its highest-PSNR setting within a factor {RATE_WINDOW:g} of the level's "
             "rate, or its nearest setting when none is that close. Audio PSNR is on a peak-to-peak range "
             "of 2 (features in [0, 1]); the waveform's SNR is given beside it.",
             "",
             "| file | model | quality | bytes | rate | PSNR (dB) | SNR (dB) | encode s | decode s "
             "| anchor at nearest rate | strongest codec at about this rate |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        anchor = r.anchor_point.text(r.rate_unit) if r.anchor_point is not None else f"{r.anchor} unavailable"
        best = r.best_point.text(r.rate_unit) if r.best_point is not None else "unavailable"
        snr = f"{r.snr:.2f}" if r.snr is not None else "–"
        lines.append(f"| {r.file} | {r.model} | {r.quality} | {r.bytes} | {r.rate:.3f} {r.rate_unit} | {r.psnr:.2f} | "
                     f"{snr} | {r.encode_seconds:.2f} | {r.decode_seconds:.2f} | {anchor} | {best} |")
    notes = _rate_order_notes(rows)
    lines += ([""] + notes if notes else []) + ["", f"Whole demo: {seconds:.0f} s.", ""]
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
        plugin = get_modality(modality)
        baselines = evaluate_baselines([sample], modality, demo_codecs(plugin), ms_ssim=False)
        snr_offset = _snr_offset(read_signal(sample, modality).features.numpy(), plugin)
        for row in sample_rows:
            near = nearest_point(baselines, row.rate, row.anchor)
            best = best_at_rate(list(baselines), row.rate, plugin.strong_codecs)
            row.anchor_point = _point(near, snr_offset) if near is not None else None
            row.best_point = _point(best, snr_offset) if best is not None else None
        unit = sample_rows[0].rate_unit
        curves = curves_from_points(_vcinr_points(sample_rows), kind="vcinr") + curves_from_points(baselines)
        written.append(rd_plot(curves, out / f"rd-{modality}.png", rate_unit=unit, log_x=True,
                               title=f"{sample.name}: bundled model '{bundled.name}'"))
        lowest = sample_rows[0].rate
        others = [p for p in (nearest_point(baselines, lowest, sample_rows[0].anchor),
                              best_at_rate(list(baselines), lowest, plugin.strong_codecs)) if p is not None]
        written += _figures(sample, modality, sample_rows, decoded, others, out)
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
    from vcinr.training import train

    overrides = {"data.path": str(SAMPLES / "cifar10")}
    if quick:
        overrides.update({"train.steps": 20, "train.eval_every": 20, "train.eval_items": 32})
    config = load_config("demo", overrides)
    print(f"meta-training a tiny VC-INR ({config.train.steps} steps) on bundled CIFAR-10 samples -> {out}")
    result = train(config, out / "model")
    k = config.meta.inner_steps
    print(f"test PSNR after {k} inner steps: {result.initial['psnr']:.2f} dB untrained -> "
          f"{result.final['psnr']:.2f} dB meta-learned ({result.seconds:.0f} s)")
