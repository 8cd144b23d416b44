"""Held-out views of a compressed scene: the original next to what ``decompress`` rendered.

``vcinr decompress scene.vci -o DIR`` writes an SRN folder with one view per camera of the
scene.  This puts the last ``--views`` views (the novel views: with the ``scenes-tiny``
preset the inner loop only sees the first 20 of 30) of the original above the decoded ones,
labels each with its PSNR, and records the mean PSNR over all held-out views in a JSON file.

Usage::

    python experiments/scene_views.py runs/bunny-scenes/test/scene_0039 runs/scene-decoded \\
        --held-out 10 --out docs/results/scenes-decoded-views.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def view(path: Path) -> np.ndarray:
    """An RGB view in [0, 1] (RGBA composited over white, as the scene reader does)."""
    image = Image.open(path)
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image)
    return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10.0 * np.log10(max(np.mean((a - b) ** 2), 1e-12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("original", type=Path, help="the scene's SRN folder")
    parser.add_argument("decoded", type=Path, help="the folder decompress wrote")
    parser.add_argument("--held-out", type=int, default=10, help="how many of the last views are novel")
    parser.add_argument("--views", type=int, default=6, help="how many of them to draw")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write (a .json beside it)")
    args = parser.parse_args()

    names = sorted(p.name for p in (args.original / "rgb").glob("*.png"))[-args.held_out:]
    pairs = []
    for name in names:
        original, decoded = view(args.original / "rgb" / name), view(args.decoded / "rgb" / name)
        if decoded.shape != original.shape:  # decoded at the model's view size
            decoded = np.asarray(Image.fromarray((decoded * 255).round().astype(np.uint8)).resize(
                original.shape[1::-1], Image.BICUBIC), dtype=np.float64) / 255.0
        pairs.append((name, original, decoded, psnr(original, decoded)))

    shown = pairs[: args.views]
    fig, axes = plt.subplots(2, len(shown), figsize=(1.6 * len(shown), 3.6), squeeze=False)
    for j, (name, original, decoded, value) in enumerate(shown):
        axes[0][j].imshow(original)
        axes[0][j].set_title(f"view {Path(name).stem.lstrip('0') or '0'}", fontsize=8)
        axes[1][j].imshow(decoded)
        axes[1][j].set_title(f"{value:.1f} dB", fontsize=8)
        for ax in (axes[0][j], axes[1][j]):
            ax.set_axis_off()
    fig.suptitle("held-out views: original (top), decoded from the .vci (bottom)", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    record = {"original": str(args.original), "decoded": str(args.decoded), "held_out_views": names,
              "psnr_per_view": [p[3] for p in pairs], "mean_psnr": float(np.mean([p[3] for p in pairs]))}
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    print(f"mean PSNR of {len(pairs)} held-out views: {record['mean_psnr']:.2f} dB; wrote {args.out}")


if __name__ == "__main__":
    main()
