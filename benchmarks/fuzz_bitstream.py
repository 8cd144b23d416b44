"""Fuzz the ``.vci`` decoder with mutated and truncated real bitstreams (docs/reliability.md).

    OMP_NUM_THREADS=1 python -m benchmarks.fuzz_bitstream --cases 100000 [--workdir DIR] [--atheris]

Builds two tiny models on ``../shared/data`` (an unpatched one on whole CIFAR-10 images and
one on 16×16 patches of them, a few training steps each: the decoder's work does not depend
on how good they are), fits a learned and a uniform quality level for each, and compresses
real files with them (a CIFAR-10 test image; a 56×40 Kodak crop, 12 patches).  Every case then mutates one of those ``.vci`` files (bit flips,
overwritten, inserted and deleted bytes, truncation, splices, runs of 0x00/0xFF, or a header
field rewritten), in half of the cases recomputes the CRC so the damage gets past it like a
forged file would, and decodes the result with :func:`vcinr.pipeline.decode_bytes`.

A case passes when decoding ends in :class:`vcinr.errors.BitstreamError` or yields a valid
signal (finite features in [0, 1], the grid and channels the header names).  Any other
exception, a case taking more than ``--case-timeout`` CPU seconds (not wall time: a niced run
on a machine shared with training would time out on its scheduling), or a crash of the process
(which the harness cannot catch: the run then simply dies) is a failure; failing inputs are saved
under ``WORKDIR/failures/``.  With ``--atheris`` (``pip install atheris``, if available
for the platform) the mutations are driven by atheris' coverage-guided engine instead of
the seeded random mutator.

The same mutator and checker run in CI (``tests/test_fuzz_bitstream.py``, hypothesis).
"""

from __future__ import annotations

import argparse
import random
import shutil
import struct
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from vcinr.codec.bitstream import pack, unpack
from vcinr.errors import BitstreamError
from vcinr.meta.model import LoadedModel

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF)


@dataclass
class Seed:
    """A real bitstream and the model that decodes it."""

    name: str
    data: bytes
    loaded: LoadedModel


def forge_crc(data: bytes) -> bytes:
    """Replace the last 4 bytes by the CRC-32 of the rest, as a deliberate forger would."""
    if len(data) < 4:
        return data
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def nested(depth: int) -> list:
    """A list nested ``depth`` deep, built without recursion."""
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def mutate_header(data: bytes, rng: random.Random) -> bytes:
    """Rewrite one header field of a valid stream and repack it (valid CRC, hostile values)."""
    header, payload = unpack(data)
    big = rng.choice([0, 1, 2, 3, 255, 256, 2**16, 2**20, 2**31 - 1, 2**32 - 1])
    field = rng.choice(["grid", "patch", "count", "symbols", "channels", "modality", "meta", "payload", "zeros",
                        "ones", "kind"])
    if field == "grid":
        grid = list(header.grid_shape)
        grid[rng.randrange(len(grid))] = max(big, 1)
        header = replace(header, grid_shape=tuple(grid))
    elif field == "patch":
        header = replace(header, patch_shape=tuple(max(rng.choice([1, big]), 1) for _ in header.patch_shape))
    elif field == "count":
        header = replace(header, patch_count=max(big, 1))
    elif field == "symbols":
        header = replace(header, symbols_per_patch=max(big, 1))
    elif field == "channels":
        header = replace(header, channels=max(big, 1))
    elif field == "modality":
        header = replace(header, modality=rng.choice(["audio", "voxels", "x" * 32, "image"]))
    elif field == "meta":
        folded = {"\u0000arange": [0, 1, rng.choice([10**3, 10**6, 2**31])]}  # as the decoder sees a folded range
        header = replace(header, meta=rng.choice([{}, {"mode": "L"}, {"height": -1, "width": 10**9},
                                                  {"format": "GIF", "mode": 7}, {"sample_rate": 0},
                                                  {"a": [folded] * rng.randint(1, 3000)},  # issue 14's meta bomb
                                                  {"a": nested(rng.randint(30, 200))}, {"a": 10**rng.randint(18, 40)},
                                                  {"a": {"\u0000arange": [1e307, 1e307, 1000]}}]))
    elif field == "kind":
        header = replace(header, kind=rng.choice(["learned", "uniform"]))
    elif field == "payload":
        payload = rng.randbytes(rng.randrange(0, 2 * len(payload) + 8))
    elif field == "zeros":
        payload = bytes(rng.randrange(0, 4 * len(payload) + 8))
    else:  # a run of 0xFF: escape codes with long bypass runs in the range coder
        payload = b"\xff" * rng.randrange(0, 4 * len(payload) + 64)
    return pack(header, payload)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random mutation of a real ``.vci`` file (see the module docstring)."""
    op = rng.randrange(9)
    out = bytearray(data)
    n = len(out)
    if op == 0:  # flip a few bits
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif op == 1:  # overwrite bytes with interesting or random values
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(n)] = rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(256)
    elif op == 2:  # insert bytes
        at = rng.randrange(n + 1)
        out[at:at] = rng.randbytes(rng.randint(1, 16))
    elif op == 3:  # delete a range
        at = rng.randrange(n)
        del out[at : at + rng.randint(1, 16)]
    elif op == 4:  # truncate
        del out[rng.randrange(n) :]
    elif op == 5:  # splice: copy a chunk elsewhere
        a, b = sorted(rng.randrange(n) for _ in range(2))
        at = rng.randrange(n)
        out[at : at + (b - a)] = data[a:b]
    elif op == 6:  # a run of 0x00 or 0xFF
        at = rng.randrange(n)
        out[at : at + rng.randint(1, 64)] = bytes([rng.choice((0x00, 0xFF))]) * rng.randint(1, 64)
    elif op == 7:  # random garbage with the right magic
        out = bytearray(data[:5] + rng.randbytes(rng.randrange(0, 2 * n)))
    else:
        return mutate_header(data, rng)
    return forge_crc(bytes(out)) if rng.random() < 0.5 else bytes(out)


def check(data: bytes, loaded: LoadedModel) -> str:
    """Decode ``data``: ``"refused"`` (a BitstreamError) or ``"decoded"`` (a valid signal); else raise."""
    from vcinr.pipeline import decode_bytes

    try:
        signal, header, _ = decode_bytes(data, loaded, "fuzzed.vci")
    except BitstreamError as exc:
        message = str(exc)
        if not message or "\n" in message:
            raise AssertionError(f"BitstreamError message is not one line: {message!r}") from None
        return "refused"
    features = signal.features
    expected = (*header.grid_shape, loaded.spec.out_dim)
    if tuple(features.shape) != expected:
        raise AssertionError(f"decoded shape {tuple(features.shape)}, header says {expected}")
    if not bool(torch.isfinite(features).all()) or float(features.min()) < 0 or float(features.max()) > 1:
        raise AssertionError("decoded features are not finite values in [0, 1]")
    return "decoded"


# --- building the seed corpus -----------------------------------------------------------------


def _tiny_model(out: Path, data: Path, kind: str, patch: list[int] | None) -> Path:
    from vcinr.codec.fit import FitSettings, fit_codecs
    from vcinr.config import load_config
    from vcinr.training import train

    if not (out / "codecs").is_dir():
        overrides = {"data.kind": kind, "data.path": str(data), "data.patch": patch, "data.max_items": 64,
                     "train.steps": 5, "train.batch_size": 8, "train.eval_items": 8, "train.eval_every": 5,
                     "model.width": 32, "model.depth": 3, "model.latent_dim": 16, "model.vcinr.hidden": 32,
                     "meta.inner_steps": 2}
        train(load_config("kodak-tiny", overrides), out, progress=False)
        fit_codecs(out, settings=FitSettings(lambdas=(0.01,), bits=(6,), steps=20, lr=1e-2, batch_size=8,
                                             max_items=64, eval_items=16), progress=False)
    return out


def build_seeds(workdir: Path, data: Path = DATA) -> list[Seed]:
    """Tiny models and real bitstreams of a CIFAR-10 image and a Kodak crop at every level."""
    import numpy as np
    from PIL import Image

    from vcinr.meta.model import load_model
    from vcinr.pipeline import compress_file

    workdir.mkdir(parents=True, exist_ok=True)
    cifar = _tiny_model(workdir / "cifar-model", data / "cifar10", "cifar10", None)
    patched = _tiny_model(workdir / "patched-model", data / "cifar10", "cifar10", [16, 16])
    Image.fromarray(np.load(data / "cifar10" / "test.npz")["images"][0]).save(workdir / "cifar.png")
    with Image.open(data / "kodak" / "kodim01.png") as img:
        img.crop((300, 200, 356, 240)).save(workdir / "kodak-crop.png")  # 56×40: 12 patches, padded edges
    seeds = []
    for model, image in ((cifar, "cifar.png"), (patched, "kodak-crop.png")):
        loaded = load_model(model)
        for quality in ("1", "u6"):
            vci = workdir / f"{model.name}-{quality}.vci"
            compress_file(workdir / image, model, quality, vci)
            seeds.append(Seed(vci.name, vci.read_bytes(), loaded))
    return seeds


# --- the long run -----------------------------------------------------------------------------


def run_random(seeds: list[Seed], cases: int, seed: int, workdir: Path, case_timeout: float) -> Counter:
    from tqdm import tqdm

    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    failures = workdir / "failures"
    for i in tqdm(range(cases), desc="fuzz .vci", unit="case", mininterval=2.0):
        base = seeds[i % len(seeds)]
        data = mutate(base.data, rng)
        started = time.process_time()
        try:
            outcomes[check(data, base.loaded)] += 1
        except Exception as exc:  # noqa: BLE001 - every other outcome is a finding
            failures.mkdir(exist_ok=True)
            (failures / f"case{i}-{base.name}").write_bytes(data)
            outcomes[f"FAILED {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"] += 1
        if time.process_time() - started > case_timeout:
            failures.mkdir(exist_ok=True)
            (failures / f"slow{i}-{base.name}").write_bytes(data)
            outcomes["FAILED slow case"] += 1
    return outcomes


def _instrument_vcinr(atheris) -> None:
    """Coverage instrumentation for vcinr's own functions (all of torch's would take many minutes)."""
    import inspect

    for name, module in list(sys.modules.items()):
        if module is None or not (name == "vcinr" or name.startswith("vcinr.")):
            continue
        for obj in vars(module).values():
            members = vars(obj).values() if inspect.isclass(obj) else [obj]
            for func in members:
                if inspect.isfunction(func) and func.__module__ == name:
                    atheris.instrument_func(func)


def run_atheris(seeds: list[Seed], cases: int, workdir: Path) -> None:
    """libFuzzer via atheris over the seed files: byte 0 picks the model (and, its top bit, a forged CRC)."""
    import atheris  # optional: pip install atheris

    corpus = workdir / "atheris-corpus"
    corpus.mkdir(exist_ok=True)
    for i, seed in enumerate(seeds):
        (corpus / seed.name).write_bytes(bytes([i]) + seed.data)

    def one_input(raw: bytes) -> None:
        if raw:
            base = seeds[(raw[0] & 0x7F) % len(seeds)]
            check(forge_crc(raw[1:]) if raw[0] & 0x80 else raw[1:], base.loaded)

    _instrument_vcinr(atheris)
    atheris.Setup([sys.argv[0], f"-runs={cases}", f"-artifact_prefix={workdir}/", str(corpus)], one_input)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("runs/fuzz-bitstream"))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--case-timeout", type=float, default=10.0, help="CPU seconds a case may take")
    parser.add_argument("--atheris", action="store_true", help="coverage-guided mutations (needs atheris)")
    parser.add_argument("--fresh", action="store_true", help="rebuild the tiny models")
    args = parser.parse_args(argv)
    if args.fresh and args.workdir.exists():
        shutil.rmtree(args.workdir)
    torch.set_num_threads(1)
    seeds = build_seeds(args.workdir, args.data)
    started, cpu = time.perf_counter(), time.process_time()
    if args.atheris:
        run_atheris(seeds, args.cases, args.workdir)
        return 0
    outcomes = run_random(seeds, args.cases, args.seed, args.workdir, args.case_timeout)
    failed = sum(n for k, n in outcomes.items() if k.startswith("FAILED"))
    print(f"{args.cases} cases in {time.perf_counter() - started:.0f} s, {time.process_time() - cpu:.0f} CPU s "
          f"(seed {args.seed}, {len(seeds)} seed files: {', '.join(s.name for s in seeds)})")
    for outcome, count in outcomes.most_common():
        print(f"  {count:>8}  {outcome}")
    print("no failures" if not failed else f"{failed} FAILURES, inputs in {args.workdir / 'failures'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
