"""Fuzz every reader besides the ``.vci`` decoder: model directories, codec levels, checkpoints, inputs.

    prlimit --as=6000000000 python -m benchmarks.fuzz_readers --cases 100000 [--target T] [--workdir DIR]

``benchmarks.fuzz_bitstream`` covers ``.vci`` files; this covers the other files vcinr reads
(docs/reliability.md, "Threat model"), one target each, seeded from real files:

* ``model`` — the bundled image model's ``config.json`` (its weights intact, so the
  fingerprint still matches: ``config.json`` is not covered by it), read by ``load_model``;
* ``level`` — that model's codec-level JSON files, read by ``list_levels`` + ``load_level``;
* ``checkpoint`` — a training checkpoint written by ``save_state`` (its tensors and its
  scalars' JSON), read by ``load_state``;
* ``image``, ``audio``, ``sphere``, ``array``, ``voxels``, ``video`` — the bundled demo
  samples and small files written by vcinr's own writers, read by ``read_signal``;
* ``scene-intrinsics``, ``scene-pose`` — an SRN scene folder written by the scene writer,
  one of its text files mutated, read by ``read_signal(folder, "scene")``.

Mutations: bit flips, overwritten / inserted / deleted bytes, truncation, runs of 0x00/0xFF,
and for JSON a value anywhere in the document replaced by a hostile one (huge or negative
numbers, NaN/Infinity, strings, lists, deep nesting, a dropped key).  A case passes when
the reader ends in a :class:`vcinr.errors.VcinrError` (``load_state``: also the errors its
callers turn into "damaged checkpoint") or returns a valid result; anything else is a
failure, saved under ``WORKDIR/failures/``, and so is a case that takes more than
``--case-timeout`` CPU seconds (CPU, not wall time, so that a niced run on a busy machine
measures the reader).  Run it under an address-space cap (``prlimit
--as``, 6 GB: torch alone maps ~3 GB) so that an allocation bomb fails the run instead of
passing it; a crash of the process fails it too.  ``tests/test_fuzz_readers.py`` runs a
small budget of every target in CI the same way.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError

from vcinr.errors import VcinrError

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "src" / "vcinr" / "models" / "image"
SAMPLES = ROOT / "src" / "vcinr" / "samples" / "demo"
INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF)
HOSTILE_VALUES: tuple[object, ...] = (
    -1, 0, 2**31, 2**63, 10**19, 10**25, 1e308, -1e308, 1e-308, "NaN", "Infinity", "-Infinity", "", "x\n\x1b[2J",
    "64", True, None, [], {}, [1, 2, 3], {"kind": "volume"}, [[[[[[[[1]]]]]]]], "object", "<U4",
)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One random byte-level damage of ``data``."""
    out = bytearray(data)
    kind = rng.choice(["flip", "overwrite", "insert", "delete", "truncate", "run"])
    at = rng.randrange(max(len(out), 1))
    if kind == "flip" and out:
        out[at] ^= 1 << rng.randrange(8)
    elif kind == "overwrite" and out:
        out[at] = rng.choice(INTERESTING + (rng.randrange(256),))
    elif kind == "insert":
        out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == "delete":
        del out[at : at + rng.randint(1, 16)]
    elif kind == "truncate":
        del out[at:]
    else:
        out[at : at + rng.randint(1, 64)] = bytes([rng.choice(INTERESTING)]) * rng.randint(1, 64)
    return bytes(out)


def mutate_json(data: bytes, rng: random.Random) -> bytes:
    """Replace one value anywhere in a JSON document by a hostile one, or drop a key; else damage bytes."""
    try:
        document = json.loads(data)
    except ValueError:
        return mutate_bytes(data, rng)
    slots: list[tuple[object, object]] = []
    stack: list[object] = [document]
    while stack:
        node = stack.pop()
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in children:
            slots.append((node, key))
            stack.append(child)
    if not slots or rng.random() < 0.2:
        return mutate_bytes(data, rng)
    parent, key = rng.choice(slots)
    if isinstance(parent, dict) and rng.random() < 0.15:
        del parent[key]
    else:
        value = rng.choice(HOSTILE_VALUES)
        if rng.random() < 0.05:
            value = rng.choice(["DEEP", "BIGINT"])
        parent[key] = value  # type: ignore[index]
    text = json.dumps(document)
    for token, raw in (('"NaN"', "NaN"), ('"Infinity"', "Infinity"), ('"-Infinity"', "-Infinity"),
                       ('"DEEP"', "[" * 5000 + "]" * 5000), ('"BIGINT"', "9" * 5000)):
        text = text.replace(token, raw)
    return text.encode()


class Target:
    """A file that a reader reads, its seeds, and how to run the reader on a mutated copy."""

    def __init__(self, name: str, path: Path, seeds: list[bytes], read: Callable[[], object],
                 json_seeds: bool = False, allowed: tuple[type[BaseException], ...] = (VcinrError,),
                 before: Callable[[], None] = lambda: None):
        self.name, self.path, self.seeds, self.read = name, path, seeds, read
        self.json_seeds, self.allowed, self.before = json_seeds, allowed, before

    def case(self, rng: random.Random) -> tuple[bytes, str]:
        """Write one mutated seed to ``path`` and run the reader: ``(input, "refused" | "read")``."""
        seed = rng.choice(self.seeds)
        data = mutate_json(seed, rng) if self.json_seeds and rng.random() < 0.7 else mutate_bytes(seed, rng)
        self.path.write_bytes(data)
        try:
            self.read()
        except self.allowed:
            return data, "refused"
        return data, "read"


def _model_targets(work: Path) -> list[Target]:
    from vcinr.codec.levels import list_levels, load_level
    from vcinr.meta.model import CONFIG_FILE, load_model

    model = work / "model"
    if not model.is_dir():
        shutil.copytree(MODEL, model)
    config = (MODEL / CONFIG_FILE).read_bytes()
    levels = sorted((MODEL / "codecs").glob("*.json"))

    def read_model() -> None:
        loaded = load_model(model)
        assert all(torch.isfinite(p).all() for p in loaded.model.parameters())

    def read_levels() -> None:
        loaded = load_model(model)
        for info in list_levels(loaded):
            load_level(loaded, info)

    def restore_config() -> None:
        (model / CONFIG_FILE).write_bytes(config)

    return [Target("model", model / CONFIG_FILE, [config], read_model, json_seeds=True),
            Target("level", model / "codecs" / levels[0].name, [p.read_bytes() for p in levels], read_levels,
                   json_seeds=True, before=restore_config)]


def _checkpoint_target(work: Path) -> Target:
    from safetensors.torch import load_file

    from vcinr.meta.model import WEIGHTS_FILE
    from vcinr.storage import load_state, save_state

    path = work / "checkpoint.safetensors"
    tensors = {f"model.{k}": v for k, v in load_file(MODEL / WEIGHTS_FILE).items()}
    scalars = {"step": 200, "elapsed": 12.5, "cpu": 20.25, "initial": {"psnr": 11.5},
               "param_groups": [{"lr": 3e-4, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0,
                                 "amsgrad": False, "foreach": None, "maximize": False}]}
    save_state(path, tensors, scalars)

    def read() -> None:
        load_state(path)

    return Target("checkpoint", path, [path.read_bytes()], read,
                  allowed=(VcinrError, SafetensorError, KeyError, ValueError))


def _input_targets(work: Path) -> list[Target]:
    from vcinr.modalities import read_signal, write_signal
    from vcinr.signal import Signal, grid_coordinates

    inputs = work / "inputs"
    inputs.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(inputs / "seed.npy", rng.integers(0, 1000, (6, 5, 4)).astype(np.int16))
    occupancy = rng.random((8, 8, 8, 1)) > 0.5
    for suffix in (".binvox", ".npz"):
        write_signal(Signal(torch.from_numpy(occupancy.astype(np.float32)), grid_coordinates((8, 8, 8), 0.0, 1.0),
                            "voxels", {"key": "voxels"}), inputs / f"seed-voxels{suffix}")
    write_signal(Signal(torch.rand(3, 8, 8, 3), grid_coordinates((3, 8, 8), 0.0, 1.0), "video", {"fps": 25.0}),
                 inputs / "seed.mkv")
    write_signal(Signal(torch.rand(400, 2), grid_coordinates((400,), -5.0, 5.0), "audio",
                        {"sample_rate": 8000, "subtype": "PCM_16"}), inputs / "seed.wav")
    seeds = {
        "image": [p.read_bytes() for p in SAMPLES.glob("*.png")],
        "audio": [p.read_bytes() for p in SAMPLES.glob("*.flac")],
        "sphere": [p.read_bytes() for p in SAMPLES.glob("*.npz")],
        "array": [(inputs / "seed.npy").read_bytes()],
        "voxels": [(inputs / "seed-voxels.binvox").read_bytes(), (inputs / "seed-voxels.npz").read_bytes()],
        "video": [(inputs / "seed.mkv").read_bytes()],
    }
    suffixes = {"image": ".png", "audio": ".flac", "sphere": ".npz", "array": ".npy", "voxels": ".binvox",
                "video": ".mkv"}
    targets = []
    for modality, suffix in suffixes.items():
        path = inputs / f"case{suffix}"

        def read(path: Path = path, modality: str = modality) -> None:
            read_signal(path, modality)  # a Signal is valid by construction (finite, non-empty, shapes agree)

        targets.append(Target(modality, path, seeds[modality], read))
    return targets + _scene_targets(inputs)


def _scene_targets(inputs: Path) -> list[Target]:
    """An SRN scene folder of two 8×8 views; one target mutates its intrinsics, one a pose file."""
    from vcinr.modalities import read_signal, write_signal
    from vcinr.modalities.scene import INTRINSICS, camera_rays, look_at
    from vcinr.signal import Signal

    scene = inputs / "scene"
    if not scene.is_dir():
        poses = np.stack([look_at(np.array([2.0, 0.5, 0.3 * i]), np.array([0.0, 0.0, 1.0])) for i in range(2)])
        meta = {"focal": 10.0, "cx": 4.0, "cy": 4.0, "height": 8, "width": 8, "poses": poses.reshape(2, 16).tolist()}
        write_signal(Signal(torch.rand(2, 8, 8, 3), camera_rays(poses, 10.0, 4.0, 4.0, 8, 8), "scene", meta), scene)
    files = {"scene-intrinsics": scene / INTRINSICS, "scene-pose": sorted((scene / "pose").iterdir())[0]}
    originals = {path: path.read_bytes() for path in files.values()}

    def restore() -> None:
        for path, data in originals.items():
            path.write_bytes(data)

    def read() -> None:
        read_signal(scene, "scene")

    return [Target(name, path, [originals[path]], read, before=restore) for name, path in files.items()]


def build_targets(work: Path) -> list[Target]:
    work.mkdir(parents=True, exist_ok=True)
    return [*_model_targets(work), _checkpoint_target(work), *_input_targets(work)]


def run(targets: list[Target], cases: int, seed: int, work: Path, case_timeout: float,
        cpu_budget: float | None = None) -> Counter:
    """``cases`` cases spread over ``targets``; returns outcome counts (``failed`` among them) and ``cases`` run.

    ``cpu_budget`` (CPU seconds) ends the run early, after whole rounds of the targets, and so
    does Ctrl-C or SIGTERM (the case under way is not counted), so a run on a machine busy with
    other work can be given the time it has rather than a count and still report what ran.
    """
    rng = random.Random(seed)
    counts: Counter = Counter()
    failures = work / "failures"
    budget_end = time.process_time() + cpu_budget if cpu_budget is not None else None
    try:
        _run_cases(targets, cases, rng, failures, case_timeout, budget_end, counts)
    except KeyboardInterrupt:
        print(f"stopped after {counts['cases']} cases", file=sys.stderr)
    return counts


def _run_cases(targets: list[Target], cases: int, rng: random.Random, failures: Path, case_timeout: float,
               budget_end: float | None, counts: Counter) -> None:
    for i in range(cases):
        if budget_end is not None and i % len(targets) == 0 and time.process_time() > budget_end:
            break
        target = targets[i % len(targets)]
        target.before()
        started = time.process_time()  # CPU seconds: a niced run on a busy machine is not a slow reader
        try:
            _, outcome = target.case(rng)
        except Exception as exc:  # noqa: BLE001 - anything but the reader's documented errors is a finding
            outcome = "failed"
            failures.mkdir(exist_ok=True)
            shutil.copyfile(target.path, failures / f"{target.name}-{i}{target.path.suffix}")
            print(f"FAIL {target.name} case {i}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                  file=sys.stderr)
        if outcome != "failed" and time.process_time() - started > case_timeout:
            outcome = "failed"
            print(f"FAIL {target.name} case {i}: more than {case_timeout} CPU seconds", file=sys.stderr)
        counts[f"{target.name} {outcome}"] += 1
        counts[outcome] += 1
        counts["cases"] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", action="append", help="run only these targets (repeatable; default: all)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/fuzz-readers"))
    parser.add_argument("--case-timeout", type=float, default=10.0, help="CPU seconds a case may take")
    parser.add_argument("--cpu-budget", type=float, help="stop after this many CPU seconds (default: run every case)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    targets = build_targets(args.workdir)
    if args.target:
        targets = [t for t in targets if t.name in args.target]
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill PID` ends the run like Ctrl-C
    started, cpu = time.perf_counter(), time.process_time()
    counts = run(targets, args.cases, args.seed, args.workdir, args.case_timeout, args.cpu_budget)
    print(f"{counts['cases']} cases in {time.perf_counter() - started:.0f} s, {time.process_time() - cpu:.0f} CPU s "
          f"(seed {args.seed}, targets: {', '.join(t.name for t in targets)})")
    for key in sorted(k for k in counts if " " in k):
        print(f"{counts[key]:>10}  {key}")
    print("no failures" if not counts["failed"] else f"{counts['failed']} FAILURES (inputs in {args.workdir}/failures)")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
