"""The bundled image model's training, start to end: held-out whole-image PSNR against steps and CPU-hours.

Reads the committed ``metrics.jsonl`` of the runs that made the model, in order — each run
continues the previous one's written weights (``vcinr train --init``) — and plots their
validations end to end (whole-image PSNR of Kodak kodim17–20 before quantisation), with the
largest fall below the best-so-far of each run, and writes ``recipe-training.{json,png}``.

    python experiments/recipe_curves.py --out docs/results \\
        experiments/recipe/saved/w128d6-phi256-p16-unitphi0-lr3e-4:2500 \\
        experiments/recipe/saved/w128d6-phi256-p16-continue-ema

``RUN:STEP`` cuts a run at the step whose weights the next run started from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


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
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, offset_step, offset_cpu = [], 0, 0.0
    fig, (by_step, by_cpu) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for spec in args.runs:
        folder, _, cut = spec.partition(":")
        rows, config = validations(Path(folder), int(cut) if cut else None)
        steps = [offset_step + s for s, _, _ in rows]
        hours = [(offset_cpu + c) / 3600 for _, c, _ in rows]
        psnr = [p for _, _, p in rows]
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
    by_step.set(xlabel="outer step (runs end to end)", ylabel="kodim17–20 PSNR, unquantised (dB)")
    by_cpu.set(xlabel="training CPU-hours (one thread)")
    for ax in (by_step, by_cpu):
        ax.grid(alpha=0.3)
    by_step.legend(fontsize=7)
    fig.suptitle("Bundled image model: held-out whole-image PSNR before quantisation "
                 "(width 128, depth 6, dim φ 256, 16×16)")
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "recipe-training.png", dpi=120)
    (args.out / "recipe-training.json").write_text(json.dumps({"runs": summary}, indent=1))
    for row in summary:
        print(f"{row['run']}: {row['steps']} steps, {row['cpu_seconds'] / 3600:.2f} CPU-h, {row['first']:.2f} → "
              f"best {row['best']:.2f} → last {row['last']:.2f} dB, largest dip {row['largest_dip_db']:.2f} dB")


if __name__ == "__main__":
    main()
