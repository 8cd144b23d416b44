"""Cross-modality RD curves: one vcinr model per modality against that modality's standard codecs.

The paper's claim is that one algorithm compresses every modality. This runs ``vcinr eval``
(every quality level, learned and uniform, through real ``.vci`` files) on held-out data of
each modality in ``../shared/data`` and collects the curves and BD-rates:

* ``cifar10``: the first ``--cifar-images`` CIFAR-10 test images (JPEG, JPEG 2000, WebP, AVIF);
* ``kodak``: held-out Kodak images, whole (768×512 through 32×32 patches);
* ``librispeech``: the first 3 s of held-out utterances, as the paper (MP3, AAC, Opus);
* ``video``: the held-out UCF-101 clip, centre-cropped and resized, stored losslessly (H.264, HEVC, AV1);
* ``era5``: the held-out ERA5 grid (image codecs on the unrolled lat/lon grid).

Usage (each model directory must have fitted quality levels, see ``vcinr fit-codec``)::

    python experiments/cross_modality.py --out runs/cross-modality \\
        --model cifar10=DIR --model kodak=DIR --model librispeech=DIR --model video=DIR --model era5=DIR

Only the datasets given a ``--model`` are run. Each writes ``OUT/<dataset>/rd.json`` + ``rd.png``;
``OUT/summary.md`` + ``summary.json`` tabulate the BD-rates against each modality's anchor codec,
keeping the entries of datasets an earlier run wrote there and this one did not re-run (each
entry records its own date, model and effort).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

from runinfo import DATA, Stopwatch, machine, utc_now
from vcinr.evaluate.harness import run_eval
from vcinr.modalities import write_signal
from vcinr.modalities.sphere import read_sphere
from vcinr.modalities.video import read_video


def cifar_inputs(args: argparse.Namespace, folder: Path) -> tuple[list[Path], int | None]:
    return [DATA / "cifar10" / "test.npz"], args.cifar_images


def kodak_inputs(args: argparse.Namespace, folder: Path) -> tuple[list[Path], int | None]:
    return [DATA / "kodak" / f"kodim{i:02d}.png" for i in args.kodak_images], None


def librispeech_inputs(args: argparse.Namespace, folder: Path) -> tuple[list[Path], int | None]:
    """The first 3 s of the held-out speakers' utterances (the last 20 % of files, as the presets split)."""
    files = sorted((DATA / "librispeech").rglob("*.flac"))
    held_out = files[len(files) - round(0.2 * len(files)):]
    clips = []
    for path in held_out[: args.audio_clips]:
        samples, rate = sf.read(path, dtype="int16")
        clip = folder / f"{path.stem}-3s.flac"
        sf.write(clip, samples[: 3 * rate], rate, subtype="PCM_16")
        clips.append(clip)
    return clips, None


def video_inputs(args: argparse.Namespace, folder: Path) -> tuple[list[Path], int | None]:
    """The held-out UCF-101 clip (the video presets test on the last files) as lossless FFV1."""
    signal = read_video(DATA / "video" / "v_CricketShot_g04_c01_rgb.gif", max_frames=args.video_frames,
                        size=(args.video_size, args.video_size))
    clip = folder / f"ucf101-cricketshot-{args.video_frames}x{args.video_size}.mkv"
    write_signal(signal, clip)
    return [clip], None


def era5_inputs(args: argparse.Namespace, folder: Path) -> tuple[list[Path], int | None]:
    """The held-out ERA5 grid (the era5 presets keep the last of the 5 fields for testing)."""
    grid = folder / "era5-field4.npz"
    write_signal(read_sphere(DATA / "era5" / "samples.npz", index=4), grid)
    return [grid], None


DATASETS: dict[str, tuple[Callable[[argparse.Namespace, Path], tuple[list[Path], int | None]], str | None]] = {
    "cifar10": (cifar_inputs, "cifar10"),
    "kodak": (kodak_inputs, "kodak"),
    "librispeech": (librispeech_inputs, "librispeech"),
    "video": (video_inputs, "ucf101"),
    "era5": (era5_inputs, "era5"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", action="append", default=[], metavar="DATASET=DIR",
                        help=f"model for a dataset ({', '.join(DATASETS)}); repeat per dataset")
    parser.add_argument("--cifar-images", type=int, default=100)
    parser.add_argument("--kodak-images", type=int, nargs="+", default=[17, 18, 19, 20])
    parser.add_argument("--audio-clips", type=int, default=10)
    parser.add_argument("--video-frames", type=int, default=16)
    parser.add_argument("--video-size", type=int, default=64)
    parser.add_argument("--effort", type=int, default=None,
                        help="encoder search steps for vcinr's levels (default: compress's default)")
    args = parser.parse_args()
    models = dict(item.split("=", 1) for item in args.model)
    unknown = set(models) - set(DATASETS)
    if unknown or not models:
        parser.error(f"--model DATASET=DIR with DATASET in {', '.join(DATASETS)}")
    from vcinr.evaluate.reference import reference_datasets

    previous = args.out / "summary.json"
    summary = json.loads(previous.read_text()) if previous.exists() else {"datasets": {}}
    summary.update(date=utc_now(), machine=machine())
    for name, model in models.items():
        make_inputs, reference = DATASETS[name]
        folder = args.out / name / "inputs"
        folder.mkdir(parents=True, exist_ok=True)
        inputs, limit = make_inputs(args, folder)
        with Stopwatch() as clock:
            outcome = run_eval(model, inputs, args.out / name, max_files=limit, effort=args.effort,
                               reference=reference if reference in reference_datasets() else None)
        summary["datasets"][name] = {"date": utc_now(), "model": model, "effort": args.effort,
                                     "inputs": [str(i) for i in inputs], "max_files": limit,
                                     "seconds": round(clock.wall, 1), "cpu_seconds": round(clock.cpu, 1),
                                     "bd": outcome.bd}
        print(f"{name}: {outcome.json_path} ({summary['datasets'][name]['seconds']} s)")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    (args.out / "summary.md").write_text(summary_table(summary))
    print(summary_table(summary))


def summary_table(summary: dict) -> str:
    lines = ["| dataset | curve | BD-rate vs anchor | BD-PSNR vs anchor |", "|---|---|---:|---:|"]
    for name, entry in summary["datasets"].items():
        for label, row in entry["bd"].items():
            rate, psnr = row["bd_rate_percent"], row["bd_psnr_db"]
            rate_text = "n/a" if rate is None or np.isnan(rate) else f"{rate:+.1f} %"
            psnr_text = "n/a" if psnr is None or np.isnan(psnr) else f"{psnr:+.2f} dB"
            lines.append(f"| {name} | {label} | {rate_text} | {psnr_text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
