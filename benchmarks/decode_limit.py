"""Decoding at the decoder's size limit: wall time and peak memory of ``vcinr decompress``.

``python -m benchmarks.decode_limit [--grid H W] [--threads N]`` (docs/reliability.md).

A forger does not need to encode an image to make the decoder work hard: this writes a valid
``.vci`` file for the bundled image model (32×32 patches) that declares the largest image
the decoder accepts (``signal.MAX_POINTS`` pixels, 4096×8192 by default) with all-zero
symbols at the highest learned quality level — a few hundred kB — and then times
``decompress_file`` of it to PNG in a fresh process, reporting the wall time and the peak
resident memory and the CPU seconds of that process (``ru_maxrss``, ``ru_utime + ru_stime``:
CPU seconds do not depend on how busy a shared machine is; ``--grid 32 32`` gives the
footprint of the runtime and the model alone).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from vcinr.codec import entropy
from vcinr.codec.bitstream import Header, pack
from vcinr.codec.levels import load_level
from vcinr.meta.model import load_model
from vcinr.patching import patch_count
from vcinr.signal import MAX_POINTS

MODEL = Path(__file__).resolve().parents[1] / "src" / "vcinr" / "models" / "image"
_CHILD = """
import sys, time
from vcinr.pipeline import decompress_file
started = time.perf_counter()
decompress_file(sys.argv[1], sys.argv[2], sys.argv[3])
print(time.perf_counter() - started)
"""


def forged_stream(grid: tuple[int, int]) -> bytes:
    """A valid ``.vci`` of all-zero symbols for ``grid`` (H, W) with the bundled image model."""
    loaded = load_model(MODEL)
    level = load_level(loaded, None)
    patches = patch_count(grid, tuple(loaded.spec.item_shape))
    symbols = torch.zeros(patches, level.codec.symbol_dim, dtype=torch.int32)
    meta = {"mode": "RGB", "source_mode": "RGB", "format": "PNG", "height": grid[0], "width": grid[1]}
    header = Header(loaded.fingerprint, level.fingerprint, level.codec.kind, "image", 3, grid,
                    tuple(loaded.spec.item_shape), patches, level.codec.symbol_dim, meta)
    return pack(header, entropy.encode(symbols, level.codec.tables))


def measure(grid: tuple[int, int], threads: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="vcinr-decode-limit-") as tmp:
        vci = Path(tmp) / "limit.vci"
        vci.write_bytes(forged_stream(grid))
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        started = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", _CHILD, str(vci), str(MODEL), str(Path(tmp) / "out.png")],
                               env=env, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"grid": list(grid), "points": grid[0] * grid[1], "file_bytes": vci.stat().st_size,
                "threads": threads, "decode_seconds": float(child.stdout.split()[-1]), "process_seconds": wall,
                "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_bytes": usage.ru_maxrss * 1024}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, nargs=2, default=(4096, MAX_POINTS // 4096), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    result = measure(tuple(args.grid), args.threads)
    print(json.dumps(result))
    print(f"{result['grid'][0]}x{result['grid'][1]} ({result['file_bytes']} B file): decode "
          f"{result['decode_seconds']:.1f} s ({result['cpu_seconds']:.0f} CPU s for the whole process), "
          f"peak RSS {result['peak_rss_bytes'] / 2**30:.2f} GiB "
          f"({result['threads']} threads)")


if __name__ == "__main__":
    main()
