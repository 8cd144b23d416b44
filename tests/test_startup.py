"""Start-up (issue 16, point 6; docs/performance.md "Start-up"): what keeps ``compress`` quick to its first work.

* loading a model builds its network on the meta device without importing sympy or
  ``torch._dynamo`` (~1.3 CPU s, pulled in by the Python meta kernels of a few init ops);
* the init code rewritten for that gives bit-identical networks when built for training;
* the command line imports torch with the garbage collector paused and freezes what it made.

``python -m benchmarks.startup`` measures the times themselves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vcinr.config import Config, ModelConfig
from vcinr.inr.conditioning import GatedConditioning, SparseShiftConditioning
from vcinr.meta.model import ItemSpec, build_model, load_model, save_model

HEAVY = ("sympy", "torch._dynamo")
IMAGE = ItemSpec("image", 2, 3, "mse", (8, 8), (0.0, 1.0))
VOXELS = ItemSpec("voxels", 3, 1, "bce", (4, 4, 4), (0.0, 1.0))
SCENE = ItemSpec("scene", 6, 3, "mse", (2, 4, 4), None, {"kind": "volume", "samples": 4, "view_dirs": True}, 16)


def _heavy_modules_after(code: str) -> list[str]:
    """Which of :data:`HEAVY` a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return eval(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("scheme", ["functa", "mscn", "vcinr"])
@pytest.mark.parametrize("spec", [IMAGE, VOXELS, SCENE], ids=["image", "voxels", "scene"])
def test_loading_a_model_imports_neither_sympy_nor_dynamo(tmp_path: Path, scheme: str, spec: ItemSpec):
    config = Config(model=ModelConfig(width=16, depth=2, conditioning=scheme, latent_dim=8))
    torch.manual_seed(0)
    model = build_model(config, spec)
    save_model(model, config, spec, tmp_path)
    assert _heavy_modules_after(f"from vcinr.meta.model import load_model\nload_model({str(tmp_path)!r})") == []
    loaded = load_model(tmp_path).model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


def test_compress_reaches_its_first_work_without_sympy_or_dynamo(tmp_path: Path):
    """Everything before the encoder's inner loop: the bundled image model, its level, the input."""
    image = tmp_path / "tiny.png"
    Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8)).save(image)
    code = ("import sys\nfrom vcinr.meta.metasgd import MetaINR\nclass FirstWork(Exception): pass\n"
            "def first_work(*args, **kwargs):\n    raise FirstWork\nMetaINR.encode = first_work\n"
            "from vcinr.cli import codec\nimport argparse\n"
            f"args = argparse.Namespace(input={str(image)!r}, output={str(tmp_path / 'out.vci')!r}, model=None, "
            "quality=None, effort=None, quiet=True)\n"
            "try:\n    codec._cmd_compress(args)\nexcept FirstWork:\n    pass\nelse:\n    sys.exit('no first work')")
    assert _heavy_modules_after(code) == []


def test_the_init_rewritten_for_the_meta_device_draws_the_same_numbers():
    """φ0 of VC-INR (randn, scaled in place) and MSCN (zeros then logits, filled in place) as before."""
    gated = GatedConditioning(latent_dim=32, layer_shapes=[(16, 2), (16, 16)], phi0_scale=0.7)
    torch.manual_seed(3)
    state = gated.initial_state()
    torch.manual_seed(3)
    assert torch.equal(state, torch.randn(32) * 0.7)
    sparse = SparseShiftConditioning(64, 16, [(16, 2), (16, 16)])
    expected = torch.cat([torch.zeros(64), torch.full((64,), sparse.init_logit)])
    assert torch.equal(sparse.initial_state(), expected)


def test_the_command_line_imports_torch_with_the_collector_paused_then_frozen():
    code = ("import gc, sys\nfrom vcinr.cli import main\nassert 'torch' not in sys.modules\nmain(['presets'])\n"
            "print(gc.get_freeze_count() > 0, gc.isenabled())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split()[-2:] == ["True", "True"]
