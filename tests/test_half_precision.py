"""Models stored in half precision (how the bundled ones stay small) load and compute in float32."""

import shutil

import torch
from safetensors.torch import load_file

from vcinr.meta.model import WEIGHTS_FILE, load_model, store_half_precision


def test_half_precision_weights_halve_the_file_and_decode_alike(tiny_cifar_model, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(tiny_cifar_model, out)
    before = load_model(out)
    size = (out / WEIGHTS_FILE).stat().st_size
    fingerprint = store_half_precision(out)
    after = load_model(out)
    assert fingerprint == after.fingerprint != before.fingerprint  # a new model: old codecs will not match it
    assert all(v.dtype in (torch.float16, torch.int64, torch.int32, torch.bool)
               for v in load_file(out / WEIGHTS_FILE).values())
    assert (out / WEIGHTS_FILE).stat().st_size < 0.6 * size
    assert all(p.dtype == torch.float32 for p in after.model.parameters())
    coords = torch.linspace(-1, 1, 32)
    grid = torch.stack(torch.meshgrid(coords, coords, indexing="ij"), -1).reshape(-1, 2)
    code = torch.randn(4, after.model.conditioning.latent_dim) * 0.1
    with torch.no_grad():
        difference = (before.model.decode(grid, code) - after.model.decode(grid, code)).abs().max()
    assert 0 < difference < 1e-2
