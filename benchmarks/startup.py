"""Start-up time of the command line: ``python -m benchmarks.startup`` (docs/performance.md, "Start-up").

Issue 16 asks for ``vcinr --help`` under 1 s and under 1.5 s to the first work of
``compress``.  Each figure is measured on fresh processes, ``--repeats`` of each in turns
after one warm-up round (which fills the file cache and writes the ``.pyc`` files), and
reported as the median, with wall and CPU (user + system) seconds:

* ``help`` — ``vcinr --help``, the installed console script, the whole process;
* ``first-work`` — ``vcinr compress tiny.png -o tiny.vci`` (a 16×16 PNG: one patch of the
  bundled image model, its default quality level and effort) from just before the process is
  started to the call of :meth:`vcinr.meta.metasgd.MetaINR.encode`, the encoder's inner loop,
  where the process stops.  Everything before it is start-up: the interpreter, the imports,
  argument parsing, the output check, finding the bundled model, loading the model and the
  quality level, reading and splitting the input.  CPU time is the process's own up to there;
* ``compress`` — the same command to its end, for scale (the one patch's inner loop, the
  encoder's search and check decode, the write).

A last run with ``python -X importtime`` splits the first-work path's imports: all of them,
``import torch`` (the floor every command that computes pays) and the self time of the
largest packages.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Runs ``vcinr`` as the console script does, but reports the moment the encoder's inner loop is
# entered (monotonic clock, the process's CPU seconds) and ends there.  The mark is set once torch
# is imported, by vcinr.cli.import_torch (or at once for a vcinr without it, given with --src), so
# that the imports happen in the order and under the collector settings of a real run.
FIRST_WORK = """
import json, os, sys, time
import vcinr.cli

def _first_work(*args, **kwargs):
    print(json.dumps({"at": time.monotonic(), "cpu_s": time.process_time()}), flush=True)
    os._exit(0)

def _mark_encoder():
    from vcinr.meta.metasgd import MetaINR
    MetaINR.encode = _first_work

_import_torch = getattr(vcinr.cli, "import_torch", None)
if _import_torch is None:
    _mark_encoder()
else:
    def _import_and_mark():
        _import_torch()
        _mark_encoder()
    vcinr.cli.import_torch = _import_and_mark
sys.exit(vcinr.cli.main(sys.argv[1:]))
"""
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def _env(src: Path) -> dict[str, str]:
    """A user's environment, with ``src`` first on the path and bytecode caching on.

    ``PYTHONDONTWRITEBYTECODE`` (set on some of the project's machines) would make every start
    compile vcinr's modules again, which an installed copy never does; the warm-up round writes
    the ``.pyc`` files (into ``__pycache__``, ignored by git).
    """
    dropped = ("PYTHONPROFILEIMPORTTIME", "PYTHONWARNINGS", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    return env


def _vcinr_script() -> Path:
    """The ``vcinr`` console script beside this interpreter: the command users run."""
    script = Path(sys.executable).parent / "vcinr"
    if not script.is_file():
        raise SystemExit(f"benchmarks: {script} not found (pip install -e . into this Python's environment)")
    return script


def _run(argv: list[str], src: Path) -> tuple[float, float, str]:
    """``(wall s, CPU s, stdout)`` of one process, started and ended here.

    CPU is the child's user + system time from the kernel's accounting: the rise of this
    process's reaped-children usage, as the runs are sequential.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, env=_env(src), cwd=ROOT)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"benchmarks: {' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr.decode()[-2000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, proc.stdout.decode()


def tiny_png(directory: Path) -> Path:
    """A 16×16 RGB PNG of seeded noise: one patch of the bundled image model."""
    import numpy as np
    from PIL import Image

    path = directory / "tiny.png"
    pixels = (np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _first_work(argv: list[str], src: Path) -> tuple[float, float]:
    """``(wall s, CPU s)`` from before the process starts to the encoder's first call."""
    start = time.monotonic()
    _, _, out = _run(argv, src)
    try:
        mark = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise SystemExit(f"benchmarks: compress ended without reaching the encoder:\n{out[-2000:]}") from None
    return mark["at"] - start, mark["cpu_s"]


def import_breakdown(argv: list[str], src: Path) -> dict:
    """One first-work run under ``python -X importtime``: ``torch``'s cumulative import, all imports, by package.

    Seconds as ``-X importtime`` reports them (its own bookkeeping makes them ~10–20 % larger
    than in a plain run).  ``by_package`` sums each module's self time under its top-level
    package name, so ``sympy`` pulled in by torch counts as ``sympy``.
    """
    proc = subprocess.run(argv[:1] + ["-X", "importtime"] + argv[1:], capture_output=True, env=_env(src), cwd=ROOT)
    total = torch = 0
    by_package: dict[str, int] = {}
    for line in proc.stderr.decode().splitlines():
        match = IMPORT_LINE.match(line)
        if match is None:
            continue
        own, cumulative, indent, name = int(match[1]), int(match[2]), len(match[3]), match[4]
        if indent == 1:
            total += cumulative
        if name == "torch":
            torch = cumulative
        package = name.split(".")[0]
        by_package[package] = by_package.get(package, 0) + own
    top = sorted(by_package.items(), key=lambda kv: -kv[1])[:8]
    return {"imports_s": total / 1e6, "torch_s": torch / 1e6, "by_package_s": {k: v / 1e6 for k, v in top}}


def measure(repeats: int, src: Path = ROOT / "src") -> dict:
    """The three figures of the vcinr in ``src``, ``repeats`` fresh processes each, in turns after a warm-up round."""
    figures = ("help", "first-work", "compress")
    runs: dict[str, dict[str, list[float]]] = {k: {"wall_s": [], "cpu_s": []} for k in figures}
    script = str(_vcinr_script())
    with tempfile.TemporaryDirectory(prefix="vcinr-startup-") as tmp:
        tiny = tiny_png(Path(tmp))
        compress = ["compress", str(tiny), "-o", str(Path(tmp) / "tiny.vci"), "--quiet"]
        first_work = [sys.executable, "-c", FIRST_WORK, *compress]
        commands = {
            "help": lambda: _run([script, "--help"], src)[:2],
            "first-work": lambda: _first_work(first_work, src),
            "compress": lambda: _run([script, *compress], src)[:2],
        }
        for command in commands.values():
            command()
        for _ in range(repeats):
            for name, command in commands.items():
                wall, cpu = command()
                runs[name]["wall_s"].append(wall)
                runs[name]["cpu_s"].append(cpu)
        breakdown = import_breakdown(first_work, src)
    result = {name: {**r, "median_wall_s": statistics.median(r["wall_s"]),
                     "median_cpu_s": statistics.median(r["cpu_s"])} for name, r in runs.items()}
    return {"src": str(src), "runs": result, "first_work_imports": breakdown, "repeats": repeats,
            "load_average": os.getloadavg()}


def report(result: dict) -> list[str]:
    """The figures as printed lines."""
    lines = []
    for name, r in result["runs"].items():
        walls = r["wall_s"]
        lines.append(f"{name:<11} {r['median_wall_s']:6.2f} s wall (median of {len(walls)}; {min(walls):.2f}–"
                     f"{max(walls):.2f})  {r['median_cpu_s']:6.2f} s CPU")
    b = result["first_work_imports"]
    packages = ", ".join(f"{k} {v:.2f}" for k, v in b["by_package_s"].items())
    lines.append(f"first-work imports (-X importtime, one run): {b['imports_s']:.2f} s, of which import torch "
                 f"{b['torch_s']:.2f} s; self time by package (s): {packages}")
    lines.append(f"load average {' '.join(f'{x:.2f}' for x in result['load_average'])}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed processes per figure after a warm-up (default 5)")
    parser.add_argument("--src", type=Path, default=ROOT / "src",
                        help="the vcinr source tree to time (default: this checkout's src), e.g. an older "
                        "commit's from 'git archive COMMIT src | tar -x -C DIR' for a before/after figure")
    parser.add_argument("--out", type=Path, help="also write every run's figures to this JSON file")
    args = parser.parse_args(argv)
    result = measure(args.repeats, args.src.resolve())
    print("\n".join(report(result)))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
