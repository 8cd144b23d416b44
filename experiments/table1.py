"""Table 1 at CPU scale: pre-quantisation test PSNR of Functa, MSCN and VC-INR conditioning.

For each dataset (CIFAR-10 images, LibriSpeech 400-sample patches) and each dim(φ) in
``--dims`` this meta-trains the same base SIREN (the ``*-tiny`` presets: width 64, depth 4,
3 second-order Meta-SGD inner steps, batch 16, seed 0) with each conditioning scheme, and
reports the test quality after 3 inner steps.  Every run gets the same outer schedule
(``SCHEDULE``: Adam 1e-3 warmed up linearly over 100 steps, then a cosine to 1e-4) and the
same number of outer steps; only the initial Meta-SGD step size differs between schemes
(``INNER_LR``), and VC-INR's φ0 starts at N(0, I) (``SCHEME_OPTIONS``) instead of 0,
LayerNorm's singular point, where its dim(φ) = 256 runs diverged at this outer learning rate.

Quality is that of whole held-out signals (``psnr``: one MSE over every point of a file,
averaged over files; :func:`vcinr.meta.training.evaluate`); for LibriSpeech the record adds
the SNR and, labelled as such, the mean of per-patch PSNRs, which silent patches inflate.

Budget: every run gets the *same number of outer steps*.  The CPU is shared with other jobs,
so a wall-clock budget would hand runs different amounts of compute depending on what else
was running; steps are deterministic and a step of every scheme costs about the same (the
CPU time of each run is recorded, so the comparison can also be read per CPU second).
dim(φ) is the number of entries that would be stored: the latent for Functa and VC-INR, and
the number of non-zero entries for MSCN (its pool is 4 × dim(φ), of which each item keeps
dim(φ)); the runner counts the non-zeros of the adapted test codes and records them.

Usage::

    OMP_NUM_THREADS=1 python experiments/table1.py --out runs/table1 --results docs/results
    python experiments/table1.py --schemes vcinr --outer-lr 3e-4      # a sensitivity row

Runs at another ``--outer-lr`` than 1e-3 are recorded beside the main ones (``outer_lr`` in
each record) and drawn dashed.  Runs live in ``OUT/<dataset>-<scheme>-<dim>/`` (re-running
resumes or skips finished runs); ``RESULTS/table1.json`` holds every run's final quality,
learning curve, budget, CPU time, hardware, seed and date, and ``RESULTS/table1.png`` the
learning curves.  ``table1-200steps.json`` keeps the earlier 200/400-step protocol's records.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from runinfo import DATA, Stopwatch, machine, utc_now
from vcinr.config import Config, load_config
from vcinr.data import load_items
from vcinr.meta.model import load_model
from vcinr.meta.training import METRICS_FILE, flat_items
from vcinr.training import train

SCHEMES = ("functa", "mscn", "vcinr")
DATASETS = {"cifar10": ("cifar10-tiny", DATA / "cifar10"), "librispeech": ("librispeech-tiny", DATA / "librispeech")}
# Initial Meta-SGD step size per scheme (what Adam barely moves at these outer learning rates, so in
# effect the step size).  Functa and MSCN adapt raw shift latents and get COIN++'s inner learning
# rate 1e-2 (Dupont et al., 2022b); with 1.0, Functa did not learn at all on CIFAR-10 (test PSNR
# 13.2 dB → 12.9 dB over 250 steps).  VC-INR's φ0 starts at N(0, I) (at φ0 = 0 LayerNorm(φ)
# divides by a vanishing spread: dim(φ) = 256 diverged on both data sets at outer lr 1e-3, 11.8 and
# 23.3 dB after 200/400 steps), and off that point LayerNorm no longer magnifies the inner steps,
# so its step size is 200 (the Kodak recipe's), chosen on the training batches' PSNR of 120-step
# probes at dim(φ) 256: 1.0 left CIFAR-10 at 12.2 dB after 180 steps, 30 / 200 / 1000 reached
# 17.6 / 17.7 / 15.9 dB over steps 100-120 (docs/results.md, Table 1).
INNER_LR = {"functa": 1e-2, "mscn": 1e-2, "vcinr": 200.0}
SCHEME_OPTIONS: dict[str, dict[str, Any]] = {
    "vcinr": {"model.vcinr.phi0_scale": 1.0, "meta.lr_clip": [-1e4, 1e4]},  # the preset's clip ±5 would cap 200
}
OUTER_LR = 1e-3  # the *-tiny presets' Adam learning rate, shared by every scheme in the main table
# The outer schedule of every run, whatever its scheme: second-order meta-learning is most fragile
# in its first steps, and a decayed rate settles the end of a run.
SCHEDULE = {"train.warmup_steps": 100, "train.decay": "cosine", "train.final_lr_fraction": 0.1}
# Validation: every 100 steps on the first 256 CIFAR-10 test images; every 250 steps on the first
# 8 held-out LibriSpeech utterances (960 patches of 400 samples, whole files; 256 patches were 2).
EVALUATION = {"cifar10": {"train.eval_every": 100, "train.eval_items": 256},
              "librispeech": {"train.eval_every": 250, "train.eval_items": 960}}
COLOURS = {"functa": "tab:orange", "mscn": "tab:green", "vcinr": "tab:blue"}


def stored_entries(model_dir: Path, eval_items: int) -> tuple[float, int]:
    """Mean and max number of non-zero entries of the adapted test codes φ (what a coder stores)."""
    loaded = load_model(model_dir)
    coords, features = flat_items(load_items(loaded.config.data, "test"))
    with torch.no_grad():
        codes = torch.cat([loaded.model.conditioning.code(loaded.model.adapt(coords, features[s : s + 64]))
                           for s in range(0, min(eval_items, features.shape[0]), 64)])
    nonzero = (codes != 0).sum(dim=1)
    return float(nonzero.float().mean()), int(nonzero.max())


def run_key(record: dict) -> tuple:
    """What identifies a run: the same key is the same run."""
    return record["dataset"], record["scheme"], record["dim_phi"], record["outer_lr"], record["steps"]


def run_config(dataset: str, scheme: str, dim: int, steps: int, args: argparse.Namespace,
               overrides: dict[str, Any] | None = None) -> Config:
    """The config of one run: the dataset's preset, the shared schedule, the scheme's own step size and options.

    ``args`` carries ``outer_lr`` and ``seed``; ``overrides`` (e.g. another SIREN width) are applied last.
    """
    preset, data = DATASETS[dataset]
    return load_config(preset, {
        **SCHEDULE, **SCHEME_OPTIONS.get(scheme, {}),
        "train.outer_lr": args.outer_lr, "data.path": str(data), "model.conditioning": scheme,
        "model.latent_dim": dim, "meta.lr_init": [INNER_LR[scheme]] * 2,
        "train.steps": steps, **EVALUATION[dataset], "train.checkpoint_every": steps, "train.seed": args.seed,
        **(overrides or {}),
    })


def train_and_record(config: Config, out: Path, quiet: bool) -> dict:
    """Train (or resume) ``config`` into ``out``; its final test quality, learning curve and cost as a record."""
    with Stopwatch() as clock:
        result = train(config, out, progress=not quiet)
    rows = list(map(json.loads, (out / METRICS_FILE).read_text().splitlines()))
    mean_nz, max_nz = stored_entries(out, config.train.eval_items)
    measured = [k for k in ("psnr", "psnr_patch_mean", "snr") if k in result.final]
    return {
        **{k: result.final[k] for k in measured}, **{f"{k}_untrained": result.initial[k] for k in measured},
        "steps": result.steps, "inner_lr_init": config.meta.lr_init[0], "outer_lr": config.train.outer_lr,
        "schedule": {k: getattr(config.train, k) for k in ("warmup_steps", "decay", "final_lr_fraction")},
        "width": config.model.width, "depth": config.model.depth,
        "stored_nonzero_mean": mean_nz, "stored_nonzero_max": max_nz,
        "curve": [(r["step"], r["val_psnr"]) for r in rows if "val_psnr" in r],
        **({"curve_snr": [(r["step"], r["val_snr"]) for r in rows if "val_snr" in r]} if "snr" in measured else {}),
        "train_cpu_seconds": next((r["cpu"] for r in reversed(rows) if "cpu" in r), None),
        "cpu_seconds": clock.cpu, "wall_seconds": clock.wall, "train_seconds_recorded": result.seconds,
        "seed": config.train.seed, "finished": utc_now(),
    }


def run_one(dataset: str, scheme: str, dim: int, steps: int, args: argparse.Namespace) -> dict:
    preset = DATASETS[dataset][0]
    config = run_config(dataset, scheme, dim, steps, args)
    suffix = "" if args.outer_lr == OUTER_LR else f"-outer{args.outer_lr:g}"
    record = {"dataset": dataset, "scheme": scheme, "dim_phi": dim, "preset": preset,
              "latent_entries": dim * (config.model.mscn.pool if scheme == "mscn" else 1),
              **train_and_record(config, args.out / f"{dataset}-{scheme}-{dim}{suffix}", args.quiet)}
    extra = f", SNR {record['snr']:.2f} dB, per-patch mean {record['psnr_patch_mean']:.2f}" if "snr" in record else ""
    print(f"{dataset:12s} {scheme:7s} dim {dim:4d}: {record['psnr']:.2f} dB whole-file{extra} after {record['steps']} "
          f"steps (stored non-zeros {record['stored_nonzero_mean']:.1f}, max {record['stored_nonzero_max']}; "
          f"{record['cpu_seconds']:.0f} s CPU, {record['wall_seconds']:.0f} s wall)", flush=True)
    return record


def plot(runs: list[dict], datasets: list[str], dims: list[int], path: Path) -> None:
    fig, axes = plt.subplots(len(datasets), len(dims), squeeze=False, figsize=(3.2 * len(dims), 2.6 * len(datasets)))
    for i, dataset in enumerate(datasets):
        for j, dim in enumerate(dims):
            ax = axes[i][j]
            for run in (r for r in runs if r["dataset"] == dataset and r["dim_phi"] == dim):
                steps, psnr = zip(*run["curve"])
                outer_lr = run_key(run)[3]
                sensitivity = outer_lr != OUTER_LR
                label = run["scheme"] + (f", outer lr {outer_lr:g}" if sensitivity else "")
                ax.plot(steps, psnr, marker=".", color=COLOURS[run["scheme"]], label=label,
                        linestyle="--" if sensitivity else "-")
            ax.set_title(f"{dataset}, dim(φ) = {dim}", fontsize=9)
            ax.set_xlabel("outer step", fontsize=8)
            ax.set_ylabel("test PSNR, whole files (dB)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/table1"))
    parser.add_argument("--results", type=Path, default=Path("docs/results"))
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=SCHEMES)
    parser.add_argument("--dims", nargs="+", type=int, default=[64, 128, 256])
    parser.add_argument("--cifar-steps", type=int, default=1000, help="outer steps of every CIFAR-10 run")
    parser.add_argument("--audio-steps", type=int, default=1000, help="outer steps of every LibriSpeech run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--outer-lr", type=float, default=OUTER_LR,
                        help="peak Adam learning rate of the outer loop (default: the presets' 1e-3)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    json_path = args.results / "table1.json"
    previous = json.loads(json_path.read_text())["runs"] if json_path.is_file() else []
    finished = {run_key(r): r for r in previous}
    args.results.mkdir(parents=True, exist_ok=True)
    runs = []

    def write() -> list[dict]:
        """Record after every run, so an interrupted sweep keeps the CPU times it measured."""
        done = {run_key(r) for r in runs}
        kept = runs + [r for r in previous if run_key(r) not in done]
        json_path.write_text(json.dumps({"experiment": "table1", "machine": machine(), "runs": kept}, indent=1))
        return kept

    for dataset in args.datasets:
        steps = args.cifar_steps if dataset == "cifar10" else args.audio_steps
        for dim in args.dims:
            for scheme in args.schemes:
                # a run already recorded keeps its record (and the CPU time it took the first time)
                record = finished.get((dataset, scheme, dim, args.outer_lr, steps))
                runs.append(record or run_one(dataset, scheme, dim, steps, args))
                write()
    kept = write()
    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in kept)]
    dims = sorted({r["dim_phi"] for r in kept})
    plot(kept, datasets, dims, args.results / "table1.png")
    print(f"wrote {json_path} and {args.results / 'table1.png'}")


if __name__ == "__main__":
    main()
