"""Capacity study (issue 17, point 3): whole-image PSNR on held-out Kodak against training CPU time.

Every variant is the Kodak recipe (``experiments/recipe/w128d6-phi256-p16-unitphi0-lr3e-4.yaml``)
with a few settings changed: width, depth, dim(φ), patch size, inner steps.  ``run`` trains
the variants one after another, each for ``--cpu-minutes`` of its own process CPU time (one
torch thread, so a shared machine slows the wall clock but not the comparison); ``summarise``
reads their ``metrics.jsonl`` (validation = whole-image PSNR of kodim17–20 before quantisation,
logged with the process CPU seconds at that step) and writes ``capacity.json`` and
``capacity.png``: the curves, and each variant's best validation within an equal CPU budget.

    python experiments/capacity.py run --runs /work/runs/capacity --cpu-minutes 20 [--only NAME ...]
    python experiments/capacity.py summarise --runs /work/runs/capacity --out docs/results

Every variant uses a constant outer lr after the warm-up (``train.decay: none``), so that a
cheaper variant's extra steps are not also a different schedule.  A variant stops at its CPU
budget by Ctrl-C (SIGINT: the run finishes its step and checkpoints); running ``run`` again
resumes unfinished variants and skips finished ones.  The final evaluation's CPU is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parent / "recipe" / "w128d6-phi256-p16-unitphi0-lr3e-4.yaml"
POLL = 20.0  # seconds between looks at a run's logged CPU time
# name → overrides of the recipe (cost per step grows with width², depth, points per patch and inner steps)
VARIANTS: dict[str, dict[str, object]] = {
    "recipe": {},
    "w64": {"model.width": 64},
    "w256": {"model.width": 256},
    "d4": {"model.depth": 4},
    "d8": {"model.depth": 8},
    "phi128": {"model.latent_dim": 128},
    "phi512": {"model.latent_dim": 512},
    "p32-phi1024": {"data.patch": [32, 32], "model.latent_dim": 1024,
                    "data.mix": [{"kind": "images", "path": "../shared/data/photos", "patch": [32, 32],
                                  "test_fraction": 0, "options": {"random_crops_per_image": 256}}]},
    "k1": {"meta.inner_steps": 1},
    "k5": {"meta.inner_steps": 5},
}
COMMON = {"train.decay": "none", "train.steps": 100_000, "train.eval_every": 200, "train.eval_items": 6144}


def _records(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _cpu_so_far(folder: Path) -> float:
    return max((r["cpu"] for r in _records(folder) if "cpu" in r), default=0.0)


def run(runs: Path, names: list[str], cpu_minutes: float) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name in names:
        out = runs / name
        if _cpu_so_far(out) < cpu_minutes * 60:
            sets = [arg for key, value in {**COMMON, **VARIANTS[name]}.items()
                    for arg in ("--set", f"{key}={json.dumps(value)}")]
            command = [sys.executable, "-m", "vcinr", "train", "--config", str(RECIPE), "--out", str(out), "--quiet",
                       *sets]
            process = subprocess.Popen(command, env=env)
            while process.poll() is None:
                time.sleep(POLL)
                if _cpu_so_far(out) >= cpu_minutes * 60:
                    process.send_signal(signal.SIGINT)  # checkpoints and stops after the current step
                    process.wait()
        print(f"{name}: {_cpu_so_far(out) / 60:.1f} CPU minutes", flush=True)


def summarise(runs: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = {name: _records(runs / name) for name in VARIANTS}
    curves = {name: [(r["cpu"] / 3600, r["val_psnr"], r["step"]) for r in rows if "val_psnr" in r and "cpu" in r]
              for name, rows in records.items()}
    curves = {name: points for name, points in curves.items() if points}
    if not curves:
        raise SystemExit(f"no variant runs with validation in {runs}")
    # the CPU-hours each variant trained for; validations come every 200 steps, so a costly variant's last
    # one can lie well before its budget: the equal budget is the training CPU, not the last validation
    hours = {name: max(r["cpu"] for r in records[name] if "cpu" in r) / 3600 for name in curves}
    budget = min(hours.values())
    table = {name: {"overrides": VARIANTS[name],
                    "best_psnr_within_budget": max((p for h, p, _ in pts if h <= budget), default=None),
                    "cpu_hours": hours[name], "steps": records[name][-1]["step"], "curve": pts}
             for name, pts in curves.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(
        {"recipe": str(RECIPE.relative_to(RECIPE.parents[2])), "budget_cpu_hours": budget,
         "metric": "whole-image PSNR of held-out kodim17-20 before quantisation (dB)",
         "clock": "process CPU time, one torch thread", "variants": table}, indent=1))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, pts in curves.items():
        hours, psnr, _ = zip(*pts)
        best = table[name]["best_psnr_within_budget"]
        ax.plot(hours, psnr, marker=".", label=f"{name} ({best:.2f} dB)" if best is not None else name)
    ax.axvline(budget, color="grey", linestyle=":", label=f"equal budget {budget:.2f} CPU-h")
    ax.set(xlabel="training CPU-hours (one thread)", ylabel="held-out Kodak PSNR before quantisation (dB)",
           title="Capacity study around the Kodak recipe")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "capacity.png", dpi=120)
    print(f"wrote {out / 'capacity.json'} and {out / 'capacity.png'}; equal budget {budget:.2f} CPU-hours")
    for name, row in sorted(table.items(), key=lambda kv: -(kv[1]["best_psnr_within_budget"] or 0.0)):
        best = row["best_psnr_within_budget"]
        best_text = f"{best:6.2f} dB" if best is not None else "   none  "
        print(f"  {name:12s} {best_text} within budget, {row['steps']} steps, {row['cpu_hours']:.3f} CPU-h")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="train the variants up to a CPU budget each")
    p_run.add_argument("--runs", type=Path, required=True)
    p_run.add_argument("--cpu-minutes", type=float, default=20.0)
    p_run.add_argument("--only", nargs="*", choices=sorted(VARIANTS), help="variants to run (default: all)")
    p_sum = sub.add_parser("summarise", help="write capacity.json and capacity.png")
    p_sum.add_argument("--runs", type=Path, required=True)
    p_sum.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args()
    if args.command == "run":
        run(args.runs, args.only or list(VARIANTS), args.cpu_minutes)
    else:
        summarise(args.runs, args.out)


if __name__ == "__main__":
    main()
