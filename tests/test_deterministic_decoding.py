"""The same .vci decodes bit-identically in separate processes running 1 and 2 threads.

Decoding runs every torch op on one thread (``backend.one_thread_map``) and spreads whole,
fixed batches over the process's threads (``pipeline.map_batches``), so float reductions
happen in the same order whatever the process's thread count, and the range coder uses the integer
CDF tables stored with the quality level: nothing float-valued is recomputed on the decoder
side that could round differently.
"""

import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vcinr.codec import entropy
from vcinr.codec.levels import list_levels, load_level
from vcinr.meta.model import load_model
from vcinr.pipeline import compress_file, decode_bytes

SCRIPT = """
import sys, numpy as np, torch
threads, vci, model, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
torch.set_num_threads(threads)
assert torch.get_num_threads() == threads
from vcinr.meta.model import load_model
from vcinr.pipeline import decode_bytes, decompress_file
decompress_file(vci, model, out + ".png")
signal, _, _ = decode_bytes(open(vci, "rb").read(), load_model(model))
np.save(out + ".npy", signal.features.numpy())
"""


@pytest.mark.parametrize("quality", ["1", "u6"])
def test_decoding_with_1_and_2_threads_is_bit_identical(tiny_cifar_codecs, data_dir, tmp_path, quality):
    source = tmp_path / "in.png"
    Image.fromarray(np.load(data_dir / "cifar10" / "test.npz")["images"][7]).save(source)
    vci = tmp_path / "in.vci"
    compress_file(source, tiny_cifar_codecs, quality, vci)
    outputs = {}
    for threads in (1, 2):
        out = tmp_path / f"t{threads}"
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        subprocess.run([sys.executable, "-c", SCRIPT, str(threads), str(vci), str(tiny_cifar_codecs), str(out)],
                       check=True, env=env, timeout=120)
        outputs[threads] = (np.load(f"{out}.npy"), (tmp_path / f"t{threads}.png").read_bytes())
    (a, png_a), (b, png_b) = outputs[1], outputs[2]
    assert a.dtype == np.float32 and a.tobytes() == b.tobytes()  # float features, bit for bit
    assert png_a == png_b
    here, _, _ = decode_bytes(vci.read_bytes(), load_model(tiny_cifar_codecs))
    assert here.features.numpy().tobytes() == a.tobytes()  # and in this process too


def test_decoder_uses_the_stored_integer_cdfs(tiny_cifar_codecs, monkeypatch):
    """Loading a level never rebuilds CDFs from floats: the tables are the int32 ones saved at fit time."""
    def refuse(*args, **kwargs):
        raise AssertionError("the decoder must not recompute CDF tables")

    monkeypatch.setattr(entropy, "pmf_to_quantized_cdf", refuse)
    monkeypatch.setattr(entropy, "tables_from_counts", refuse)
    loaded = load_model(tiny_cifar_codecs)
    from safetensors.torch import load_file

    for info in list_levels(loaded):
        level = load_level(loaded, info)
        stored = load_file(info.weights)
        tables = level.codec.tables
        assert stored["tables.cdf"].dtype == torch.int32 and torch.equal(tables.cdf, stored["tables.cdf"])
        assert torch.equal(tables.length, stored["tables.length"]) and torch.equal(tables.offset, stored["tables.offset"])
        assert all(int(row[int(n) - 1]) == 2**entropy.PRECISION for row, n in zip(tables.cdf, tables.length))


def test_multi_batch_decoding_spread_over_threads_is_bit_identical(tmp_path):
    """An 80-patch image is decoded as two batches, on two threads at once when the process has two."""
    from vcinr.bundled import resolve_model
    from vcinr.codec.search import SearchSettings

    model = resolve_model("image")
    source = tmp_path / "crop.png"
    with Image.open(Path(__file__).resolve().parents[1] / "src/vcinr/samples/demo/kodim20-crop.png") as image:
        image.crop((0, 0, 160, 128)).save(source)
    vci = tmp_path / "crop.vci"
    report = compress_file(source, model, "1", vci, search=SearchSettings(steps=0))
    assert report.patches == 80  # more than one decoder batch (pipeline.BATCH = 64) of 16x16 patches
    outputs = []
    for threads in (1, 2, 3):
        out = tmp_path / f"t{threads}"
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        subprocess.run([sys.executable, "-c", SCRIPT, str(threads), str(vci), str(model), str(out)],
                       check=True, env=env, timeout=120)
        outputs.append((np.load(f"{out}.npy").tobytes(), (tmp_path / f"t{threads}.png").read_bytes()))
    assert outputs[0] == outputs[1] == outputs[2]
    here, _, _ = decode_bytes(vci.read_bytes(), load_model(model))
    assert here.features.numpy().tobytes() == outputs[0][0]


def test_map_batches_gives_the_same_bits_for_any_number_of_workers_and_leaves_the_threads_alone():
    from vcinr.pipeline import BATCH, map_batches

    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(128, 128, generator=generator)
    items = torch.randn(3 * BATCH + 5, 300, 128, generator=generator)
    results = []
    threads = torch.get_num_threads()
    for workers in (1, 2, 4):
        results.append(map_batches(lambda x: torch.sin(x @ weight), items, workers))
    assert torch.get_num_threads() == threads  # one-thread ops on the workers' threads, not the caller's
    assert results[0].shape == (3 * BATCH + 5, 300, 128) and not results[0].requires_grad
    assert all(torch.equal(results[0], r) for r in results[1:])
