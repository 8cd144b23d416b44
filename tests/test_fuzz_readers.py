"""A small budget of ``benchmarks.fuzz_readers`` in CI: every reader besides the .vci decoder, under a memory cap.

The long runs and their results are in docs/reliability.md.  The run happens in a child
process under ``prlimit --as`` so that an allocation bomb fails it (a reader that allocates
gigabytes ends in ``MemoryError`` there, which is not one of the errors a case may end in)
instead of passing it, as it would in a test process without a cap.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CAP = str(6_000_000_000)  # bytes of address space: torch alone maps ~3 GB, the bombs took 8 GB
CASES = 550  # 50 per target, ~25 s


def capped(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(["prlimit", f"--as={CAP}", sys.executable, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) is not installed")
def test_the_memory_cap_turns_an_allocation_bomb_into_a_failure(tmp_path):
    bomb = capped(["-c", "import torch; torch.ones(8 << 30, dtype=torch.uint8)"], tmp_path)
    assert bomb.returncode != 0 and ("MemoryError" in bomb.stderr or "allocate" in bomb.stderr), bomb.stderr


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="prlimit (util-linux) is not installed")
def test_every_reader_survives_a_small_fuzz_budget(tmp_path):
    run = capped(["-m", "benchmarks.fuzz_readers", "--cases", str(CASES), "--seed", "7",
                  "--workdir", str(tmp_path / "fuzz")], tmp_path)
    assert run.returncode == 0 and "no failures" in run.stdout, run.stdout + run.stderr
    for target in ("model", "level", "checkpoint", "image", "audio", "sphere", "array", "voxels", "video",
                   "scene-intrinsics", "scene-pose"):
        assert f" {target} " in run.stdout  # every target ran


@pytest.mark.parametrize("loss", [[], {}, [1, 2, 3], {"kind": "volume"}])
def test_a_list_or_object_as_item_loss_is_a_model_error(tmp_path, loss):
    """Found by the 1,000,000-case run of 2026-12-02 (seed 4): ``item.loss`` of ``[]`` raised
    ``TypeError: unhashable type`` (the registry of losses became a dict) instead of the one-line error."""
    import json

    from vcinr.errors import ModelError
    from vcinr.meta.model import CONFIG_FILE, load_model

    model = tmp_path / "model"
    shutil.copytree(ROOT / "src" / "vcinr" / "models" / "image", model)
    config = json.loads((model / CONFIG_FILE).read_text())
    config["item"]["loss"] = loss
    (model / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelError, match="item.loss must be"):
        load_model(model)
