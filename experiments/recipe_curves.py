"""A bundled model's training, start to end: held-out whole-file PSNR against steps and CPU-hours.

Reads the committed ``metrics.jsonl`` of the runs that made the model, in order — each run
continues the previous one's written weights (``vcinr train --init``) — and plots their
validations end to end (whole-file PSNR of the held-out files before quantisation), with the
largest fall below the best-so-far of each run, and writes ``NAME.{json,png}``.

    python experiments/recipe_curves.py --out docs/results \\
        experiments/recipe/saved/w128d6-phi256-p16-unitphi0-lr3e-4:2500 \\
        experiments/recipe/saved/w128d6-phi256-p16-continue-ema \\
        experiments/recipe/saved/w128d6-phi256-p16-continue2-ema

``RUN:STEP`` cuts a run at the step whose weights the next run started from.

With ``--target DB`` it also fits PSNR = a + b·log2(CPU-hours) through the validations from
``--fit-from`` CPU-hours on (where the validation set stays the same) and reports the CPU-hours
at which that line reaches each target: where the measured trend points for a budget, not a
measurement (each doubling of the budget buying a fixed number of dB is itself an assumption).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def validations(folder: Path, last: int | None) -> tuple[list[tuple[int, float, float]], dict]:
    """``(step, cpu seconds, val_psnr)`` of a run up to step ``last``, and its recorded config."""
    rows = []
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "val_psnr" in record and (last is None or record["step"] <= last):
            rows.append((record["step"], record.get("cpu", 0.0), record["val_psnr"]))
    config = json.loads((folder / "train_config.json").read_text())
    return rows, config


def largest_dip(psnr: list[float]) -> float:
    """The largest fall of a validation below the best before it (dB)."""
    best, dip = float("-inf"), 0.0
    for value in psnr:
        best = max(best, value)
        dip = max(dip, best - value)
    return dip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (with metrics.jsonl, train_config.json), RUN[:STEP]")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--name", default="recipe-training", help="file stem of the plot and JSON")
    parser.add_argument("--title", default="Bundled image model: held-out whole-image PSNR before quantisation "
                                           "(width 128, depth 6, dim φ 256, 16×16)")
    parser.add_argument("--ylabel", default="kodim17–20 PSNR, unquantised (dB)")
    parser.add_argument("--offset-hours", type=float, default=0.0,
                        help="CPU-hours spent before the first run given (an earlier stage not plotted)")
    parser.add_argument("--target", type=float, action="append", default=[],
                        help="a PSNR to extrapolate the budget to (repeat for several)")
    parser.add_argument("--fit-from", type=float, default=0.0, help="fit only validations from this many CPU-hours")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, offset_step, offset_cpu = [], 0, args.offset_hours * 3600
    all_hours, all_psnr = [], []
    fig, (by_step, by_cpu) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for spec in args.runs:
        folder, _, cut = spec.partition(":")
        rows, config = validations(Path(folder), int(cut) if cut else None)
        steps = [offset_step + s for s, _, _ in rows]
        hours = [(offset_cpu + c) / 3600 for _, c, _ in rows]
        psnr = [p for _, _, p in rows]
        all_hours += hours
        all_psnr += psnr
        train = config["train"]
        label = (f"{Path(folder).name}: outer lr {train['outer_lr']:g}, "
                 f"{'EMA ' + format(train['ema_decay'], 'g') if train.get('ema_decay') else 'raw weights'}")
        by_step.plot(steps, psnr, marker=".", label=label)
        by_cpu.plot(hours, psnr, marker=".", label=label)
        summary.append({"run": folder, "steps": rows[-1][0], "cpu_seconds": rows[-1][1], "first": psnr[0],
                        "best": max(psnr), "last": psnr[-1], "largest_dip_db": largest_dip(psnr),
                        "ema_decay": train.get("ema_decay"), "outer_lr": train["outer_lr"],
                        "validation": [[s, c, p] for s, c, p in rows]})
        offset_step, offset_cpu = steps[-1], offset_cpu + rows[-1][1]
    result: dict = {"runs": summary, "offset_hours": args.offset_hours}
    if args.target:
        hours, psnr = np.array(all_hours), np.array(all_psnr)
        keep = (hours >= args.fit_from) & (hours > 0)
        b, a = (float(v) for v in np.polyfit(np.log2(hours[keep]), psnr[keep], 1))  # psnr ≈ a + b·log2(h)
        budgets = {f"{t:g}": 2 ** ((t - a) / b) if b > 0 else None for t in args.target}
        result["extrapolation"] = {"fit_from_hours": args.fit_from, "points": int(keep.sum()),
                                   "db_per_doubling": b, "intercept_db_at_1h": a, "cpu_hours_for": budgets}
        line = np.geomspace(hours[keep][0], max([h for h in budgets.values() if h] + [hours[-1]]), 51)
        by_cpu.plot(line, a + b * np.log2(line), "k--", lw=0.8,
                    label=f"fit: {b:+.2f} dB per doubling of CPU (extrapolation)")
        by_cpu.set_xscale("log")
        for target, hours_needed in budgets.items():
            by_cpu.axhline(float(target), color="grey", lw=0.6, ls=":")
            print(f"target {target} dB: {hours_needed:,.0f} CPU-hours on this trend" if hours_needed
                  else f"target {target} dB: not reached on this trend")
        print(f"fit over {int(keep.sum())} validations from {args.fit_from} CPU-h: {b:+.3f} dB per doubling")
        by_cpu.legend(fontsize=7)
    by_step.set(xlabel="outer step (runs end to end)", ylabel=args.ylabel)
    by_cpu.set(xlabel="training CPU-hours (process CPU time, all threads)")
    for ax in (by_step, by_cpu):
        ax.grid(alpha=0.3)
    by_step.legend(fontsize=7)
    fig.suptitle(args.title)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / f"{args.name}.png", dpi=120)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    for row in summary:
        print(f"{row['run']}: {row['steps']} steps, {row['cpu_seconds'] / 3600:.2f} CPU-h, {row['first']:.2f} → "
              f"best {row['best']:.2f} → last {row['last']:.2f} dB, largest dip {row['largest_dip_db']:.2f} dB")


if __name__ == "__main__":
    main()
