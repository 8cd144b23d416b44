"""Where φ0 starts and how large the Meta-SGD steps are: VC-INR's stability at dim(φ) 256 (docs/training.md).

Reads the ``metrics.jsonl`` of runs made with ``vcinr train --config cifar10-tiny --set
model.latent_dim=256 …`` (one folder per variant, named as in docs/training.md) and writes
``docs/results/stability.json`` (validation PSNR per evaluation, training PSNR in 20-step
windows, CPU seconds, the overrides of each run) and ``stability.png`` (validation curves).

    python experiments/stability.py --runs /work/runs/phi0 --out docs/results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

VARIANTS = {
    "A": "φ0 = 0, learned; step sizes 1, clip ±5 (old default)",
    "C": "φ0 = 0, fixed; step sizes 1, clip ±5",
    "E": "φ0 ~ N(0, 0.01²), learned; step sizes 1, clip ±5",
    "Cw": "φ0 = 0, fixed, 100 warm-up steps; step sizes 1, clip ±5",
    "B": "φ0 ~ N(0, 1), learned; step sizes 1, clip ±5",
    "B2": "φ0 ~ N(0, 1), learned; step sizes 200, clip ±10⁴",
    "B2long": "as B2, 3,000 steps",
}
WINDOW = 20


def summarise(folder: Path) -> dict:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train = [r for r in records if "psnr" in r and "loss" in r]
    windows = {}
    for r in train:
        windows.setdefault((r["step"] - 1) // WINDOW, []).append(r["psnr"])
    config = json.loads((folder / "train_config.json").read_text())
    return {
        "validation": [[r["step"], r["val_psnr"]] for r in records if "val_psnr" in r],
        "train_psnr_windows": [sum(v) / len(v) for _, v in sorted(windows.items())],
        "steps": train[-1]["step"] if train else 0,
        "cpu_seconds": train[-1]["cpu"] if train else 0.0,
        "vcinr": config["model"]["vcinr"], "meta": config["meta"],
        "outer_lr": config["train"]["outer_lr"], "warmup_steps": config["train"]["warmup_steps"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="folder holding one run folder per variant")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {name: summarise(args.runs / name) for name in VARIANTS if (args.runs / name / "metrics.jsonl").is_file()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stability.json").write_text(json.dumps(
        {"setting": "cifar10-tiny, dim(phi) 256, outer lr 1e-3, batch 16, 1 thread on a shared 2-core CPU",
         "window": WINDOW, "runs": {k: dict(v, label=VARIANTS[k]) for k, v in runs.items()}}, indent=1))
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, run in runs.items():
        steps, psnr = zip(*run["validation"])
        ax.plot(steps, psnr, marker="o", label=f"{name}: {VARIANTS[name]}", linestyle="--" if name == "B2long" else "-")
    ax.set(xlabel="outer step", ylabel="validation PSNR (dB, 256 CIFAR-10 test images)",
           title="VC-INR at dim(φ) 256, outer lr 1e-3: where φ0 starts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "stability.png", dpi=120)
    print(f"wrote {args.out / 'stability.json'} and {args.out / 'stability.png'}")


if __name__ == "__main__":
    main()
