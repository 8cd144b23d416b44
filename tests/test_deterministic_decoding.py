"""The same .vci decodes bit-identically in separate processes running 1 and 2 threads.

Decoding pins torch to one thread (``pipeline.single_thread``), so float reductions happen in
the same order whatever the process's thread count, and the range coder uses the integer
CDF tables stored with the quality level: nothing float-valued is recomputed on the decoder
side that could round differently.
"""

import os
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
