"""Does VC-INR's margin over Functa grow with the SIREN's width?  Test PSNR after an equal CPU budget.

The paper's central claim is that VC-INR's non-linear gating uses network capacity that
Functa's linear shift map cannot (its Table 1 is at 15 layers of 512 units; appendix Fig. 10a).
Its models form no width-depth family (depth is 15 or 10 throughout), so here the depth stays
at the CIFAR-10 preset's 4 and only the width varies: 32, 64, 128, 256, at dim(φ) = 128.

Every run gets the same *CPU* budget (``--cpu-budget`` seconds of training, the process's CPU
time): a wider network costs more per step, and the question is which scheme turns a given
amount of compute into quality.  Each run first times a few outer steps of its own config
(``CALIBRATION_STEPS`` after ``CALIBRATION_WARMUP``) and gets ``budget / seconds-per-step``
outer steps; the record holds the steps and the CPU it actually got (the shared CPU makes the
measured cost vary by some percent).  Seed, data, step sizes and the schedule's shape are
Table 1's (:mod:`table1`: warm-up over the first tenth of the steps, then a cosine to a tenth
of the rate); validation and the final score are whole-image test PSNR.

Usage::

    OMP_NUM_THREADS=1 python experiments/scaling.py --out runs/scaling --results docs/results

Runs live in ``OUT/<scheme>-w<width>-cpu<budget>/`` (finished ones are skipped); ``RESULTS/scaling.json``
holds the records and ``RESULTS/scaling.png`` test PSNR against width, one line per scheme.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from runinfo import machine
from table1 import COLOURS, OUTER_LR, run_config, train_and_record
from vcinr.meta.training import METRICS_FILE
from vcinr.training import train

WIDTHS = (32, 64, 128, 256)
DIM = 128
CALIBRATION_WARMUP, CALIBRATION_STEPS = 2, 8


def seconds_per_step(args: argparse.Namespace, scheme: str, width: int, out: Path) -> float:
    """Training CPU seconds per outer step of this config, timed over a few steps of a throw-away run."""
    steps = CALIBRATION_WARMUP + CALIBRATION_STEPS
    config = run_config("cifar10", scheme, DIM, steps, args,
                        {"model.width": width, "train.eval_items": 16, "train.eval_every": steps})
    shutil.rmtree(out, ignore_errors=True)
    train(config, out, progress=False)
    cpu = {r["step"]: r["cpu"] for r in map(json.loads, (out / METRICS_FILE).read_text().splitlines()) if "cpu" in r}
    shutil.rmtree(out)
    return (cpu[steps] - cpu[CALIBRATION_WARMUP]) / CALIBRATION_STEPS


def run_one(args: argparse.Namespace, scheme: str, width: int) -> dict:
    rate = seconds_per_step(args, scheme, width, args.out / f"calibrate-{scheme}-w{width}")
    steps = max(1, round(args.cpu_budget / rate))
    shape = {"train.eval_every": max(1, steps // 4), "train.warmup_steps": steps // 10}
    config = run_config("cifar10", scheme, DIM, steps, args, {"model.width": width, **shape})
    out = args.out / f"{scheme}-w{width}-cpu{args.cpu_budget:g}"
    record = {"scheme": scheme, "width": width, "dim_phi": DIM, "cpu_budget": args.cpu_budget,
              "calibrated_seconds_per_step": rate, **train_and_record(config, out, True)}
    print(f"{scheme:7s} width {width:4d}: {record['psnr']:.2f} dB after {steps} steps "
          f"({rate:.3f} CPU s/step; {record['train_cpu_seconds']:.0f} s training CPU, "
          f"{record['cpu_seconds']:.0f} s in all)", flush=True)
    return record


def margin_trend(runs: list[dict], target_width: int = 512) -> dict | None:
    """VC-INR's margin over Functa per width, a least-squares line in log2(width), and that line at ``target_width``.

    An extrapolation from a handful of depth-4 points: it says where the measured trend points,
    not what a 15-layer network of that width would do.
    """
    psnr = {(r["scheme"], r["width"]): r["psnr"] for r in runs}
    widths = sorted(w for (scheme, w) in psnr if scheme == "vcinr" and ("functa", w) in psnr)
    if len(widths) < 2:
        return None
    x = np.log2(widths)
    margins = [psnr["vcinr", w] - psnr["functa", w] for w in widths]
    slope, intercept = np.polyfit(x, margins, 1)
    return {"widths": widths, "margins_db": margins, "slope_db_per_doubling": float(slope),
            "extrapolated_width": target_width,
            "extrapolated_margin_db": float(slope * np.log2(target_width) + intercept)}


def plot(runs: list[dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    for scheme in sorted({r["scheme"] for r in runs}):
        points = sorted((r["width"], r["psnr"], r["steps"]) for r in runs if r["scheme"] == scheme)
        widths, psnr, steps = zip(*points)
        ax.plot(widths, psnr, marker="o", color=COLOURS[scheme], label=scheme)
        for w, p, s in points:
            ax.annotate(f"{s}", (w, p), textcoords="offset points", xytext=(3, 3), fontsize=6, color=COLOURS[scheme])
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(WIDTHS), [str(w) for w in WIDTHS])
    ax.set_xlabel("SIREN width (depth 4)", fontsize=8)
    ax.set_ylabel("test PSNR, whole images (dB)", fontsize=8)
    ax.set_title(f"CIFAR-10, dim(φ) = {DIM}, {runs[0]['cpu_budget']:.0f} CPU s each (labels: outer steps)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/scaling"))
    parser.add_argument("--results", type=Path, default=Path("docs/results"))
    parser.add_argument("--schemes", nargs="+", default=["functa", "vcinr"], choices=list(COLOURS))
    parser.add_argument("--widths", nargs="+", type=int, default=list(WIDTHS))
    parser.add_argument("--cpu-budget", type=float, default=90.0, help="training CPU seconds of every run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.outer_lr = OUTER_LR

    json_path = args.results / "scaling.json"
    runs = json.loads(json_path.read_text())["runs"] if json_path.is_file() else []

    def this_budget() -> list[dict]:
        """The runs of this ``--cpu-budget`` (the JSON keeps runs at other budgets beside them)."""
        return [r for r in runs if r["cpu_budget"] == args.cpu_budget]

    for width in args.widths:
        for scheme in args.schemes:
            if any(r["scheme"] == scheme and r["width"] == width for r in this_budget()):
                continue
            runs.append(run_one(args, scheme, width))
            json_path.write_text(json.dumps({"experiment": "scaling", "machine": machine(), "runs": runs,
                                             "vcinr_margin": margin_trend(this_budget())}, indent=1))
    plot(this_budget(), args.results / "scaling.png")
    print(f"wrote {json_path} and {args.results / 'scaling.png'}")


if __name__ == "__main__":
    main()
