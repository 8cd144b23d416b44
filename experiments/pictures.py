"""Pictures: what the codec's output looks and sounds like next to a standard codec at similar rate.

* Images (``--image-model``, a CIFAR-10 model with fitted quality levels): for each chosen
  CIFAR-10 *test* image, the original, the ``vcinr`` decode at ``--image-quality``, and the
  JPEG and WebP settings whose file size is nearest (in log rate) to the ``.vci`` file,
  with the absolute-error maps underneath (:func:`vcinr.evaluate.plots.reconstruction_grid`).
  Labels give the bpp of the complete files (``.vci`` container included) and PSNR.
* Audio (``--audio-model``, a LibriSpeech model with fitted quality levels): the first 3 s of a
  held-out utterance, its ``vcinr`` decode and the MP3 bitrate nearest to it, as spectrograms
  (:func:`vcinr.evaluate.plots.spectrogram_figure`).

Every decode goes through the real files: ``compress_file`` writes the ``.vci``,
``decompress_file`` writes the PNG/FLAC that is shown.

Usage::

    python experiments/pictures.py --image-model src/vcinr/models/image --image-quality 3 --images 0 1 \\
        --audio-model src/vcinr/models/audio --audio-quality 3 --results docs/results
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from runinfo import DATA, machine, utc_now
from vcinr.evaluate.baselines import nearest_point, run_audio_codec, run_image_codec
from vcinr.evaluate.plots import reconstruction_grid, spectrogram_figure
from vcinr.pipeline import compress_file, decompress_file


def image_grid(model: Path, quality: str | None, index: int, folder: Path, out: Path) -> dict:
    with np.load(DATA / "cifar10" / "test.npz", allow_pickle=False) as npz:
        original = np.ascontiguousarray(npz["images"][index])
    source = folder / f"cifar10_test_{index:05d}.png"
    Image.fromarray(original).save(source)
    report = compress_file(source, model, quality, folder / f"{index}.vci")
    decompress_file(report.output, model, folder / f"{index}_decoded.png")
    decoded = np.asarray(Image.open(folder / f"{index}_decoded.png").convert("RGB"))
    panels = {f"vcinr level {quality or 'default'}, {report.bpp:.2f} bpp": decoded}
    record = {"index": index, "vcinr": {"quality": report.quality, "bpp": report.bpp, "psnr": report.value}}
    for codec in ("jpeg", "webp"):
        runs = run_image_codec(original, codec, with_ms_ssim=False)
        best = nearest_point([r.point for r in runs], report.bpp)
        run = next(r for r in runs if r.point is best)
        panels[f"{codec.upper()} {run.point.setting}, {run.point.bpp:.2f} bpp"] = run.reconstruction
        record[codec] = {"setting": run.point.setting, "bpp": run.point.bpp, "psnr": run.point.psnr}
    reconstruction_grid(original, panels, out)
    return record


def audio_figure(model: Path, quality: str | None, folder: Path, out: Path) -> dict:
    files = sorted((DATA / "librispeech").rglob("*.flac"))
    path = files[len(files) - round(0.2 * len(files))]  # the first held-out utterance (presets test on the last 20 %)
    samples, rate = sf.read(path, dtype="int16")
    clip = folder / f"{path.stem}-3s.flac"
    sf.write(clip, samples[: 3 * rate], rate, subtype="PCM_16")
    original, _ = sf.read(clip, dtype="int16")
    report = compress_file(clip, model, quality, folder / "clip.vci")
    decompress_file(report.output, model, folder / "clip_decoded.flac")
    decoded, _ = sf.read(folder / "clip_decoded.flac", dtype="int16")
    runs = run_audio_codec(original, rate, "mp3")
    best = nearest_point([r.point for r in runs], report.kbps)
    mp3 = next(r for r in runs if r.point is best)
    spectrogram_figure(original, {f"vcinr level {quality or 'default'}, {report.kbps:.1f} kbps": decoded,
                                  f"MP3 {mp3.point.setting}, {mp3.point.kbps:.1f} kbps": mp3.reconstruction.reshape(original.shape)}, rate, out)
    return {"file": path.name, "vcinr": {"quality": report.quality, "kbps": report.kbps, "psnr": report.value},
            "mp3": {"setting": mp3.point.setting, "kbps": mp3.point.kbps, "psnr": mp3.point.psnr, "lag_samples": mp3.info["lag_samples"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-model", type=Path)
    parser.add_argument("--image-quality", default=None, help="quality level (default: the highest learned one)")
    parser.add_argument("--images", nargs="+", type=int, default=[0, 1], help="CIFAR-10 test indices")
    parser.add_argument("--audio-model", type=Path)
    parser.add_argument("--audio-quality", default=None)
    parser.add_argument("--results", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    if args.image_model is None and args.audio_model is None:
        parser.error("give --image-model and/or --audio-model")
    args.results.mkdir(parents=True, exist_ok=True)
    record: dict = {"experiment": "pictures", "machine": machine(), "date": utc_now()}
    with tempfile.TemporaryDirectory(prefix="vcinr-pictures-") as tmp:
        if args.image_model is not None:
            record["images"] = [image_grid(args.image_model, args.image_quality, i, Path(tmp),
                                           args.results / f"pictures_cifar10_{i}.png") for i in args.images]
            record["image_model"] = str(args.image_model)
        if args.audio_model is not None:
            record["audio"] = audio_figure(args.audio_model, args.audio_quality, Path(tmp),
                                           args.results / "pictures_librispeech.png")
            record["audio_model"] = str(args.audio_model)
    (args.results / "pictures.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
