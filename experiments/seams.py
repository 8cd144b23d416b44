"""The decoder's deblocking filter by eye: a crop decoded with and without ``patching.smooth_seams_``.

Compresses a held-out image with a model's quality level through the real ``.vci`` path, decodes
it twice from the same file — once as ``vcinr decompress`` does (filter on), once with the
filter replaced by the identity — and writes the crop of the original and both decodes side
by side, magnified, with each whole image's PSNR in the labels.

Usage::

    python experiments/seams.py --model src/vcinr/models/image --quality 2 \\
        --image ../shared/data/kodak/kodim20.png --box 300 200 96 64 --out docs/results/seams.png
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from vcinr import pipeline
from vcinr.codec.search import SearchSettings
from vcinr.meta.model import load_model
from vcinr.modalities import read_signal


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10.0 * math.log10(float((a - b).square().mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--quality", required=True)
    parser.add_argument("--image", required=True, type=Path)
    parser.add_argument("--box", type=int, nargs=4, metavar=("X", "Y", "W", "H"), default=(300, 200, 96, 64))
    parser.add_argument("--effort", type=int, default=0, help="encoder search steps (compress's --effort)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        vci = Path(tmp) / "image.vci"
        report = pipeline.compress_file(args.image, args.model, args.quality, vci, progress=False,
                                         search=SearchSettings(steps=args.effort))
        data = vci.read_bytes()
    loaded = load_model(args.model)
    original = read_signal(args.image).features
    filtered = pipeline.decode_bytes(data, loaded)[0].features
    smooth = pipeline.smooth_seams_
    pipeline.smooth_seams_ = lambda grid, patch: grid  # the same decode without the filter
    try:
        plain = pipeline.decode_bytes(data, loaded)[0].features
    finally:
        pipeline.smooth_seams_ = smooth
    # what a PNG holds: 8-bit pixels
    original, filtered, plain = ((x * 255).round() / 255 for x in (original, filtered, plain))
    x, y, w, h = args.box
    bpp = 8 * len(data) / (original.shape[0] * original.shape[1])
    panels = [("original", original), (f"without filter: {psnr(plain, original):.2f} dB", plain),
              (f"with filter (vcinr decompress): {psnr(filtered, original):.2f} dB", filtered)]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, (label, image) in zip(axes, panels):
        ax.imshow(image[y:y + h, x:x + w].numpy(), interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{args.image.name}, quality {args.quality}: {len(data)} B, {bpp:.3f} bpp "
                 f"effort {args.effort} (whole-image PSNR in the labels; crop x={x}, y={y}, {w}×{h})", fontsize=10)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    summary = {"image": args.image.name, "quality": args.quality, "bytes": len(data), "bpp": bpp,
               "psnr_without_filter": psnr(plain, original), "psnr_with_filter": psnr(filtered, original),
               "box": [x, y, w, h], "effort": args.effort, "model": str(args.model), "report": str(report)}
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
