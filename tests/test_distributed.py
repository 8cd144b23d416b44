"""`torchrun --nproc_per_node=2 -m vcinr train` on CPU (gloo) matches a single process.

Two processes with shards of 2 items follow the single-process run with the global batch of
4 (same samples, gradients averaged): the same loss curve and validation metrics within
float tolerance.  The 2-process run is interrupted after 3 steps and resumed, so resuming
is covered too; rank 0 alone writes the metrics (no duplicated lines) and the model.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from vcinr.cli import main
from vcinr.meta.model import load_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def tiny_config(tmp_path: Path) -> Path:
    config = {
        "model": {"width": 16, "depth": 2, "latent_dim": 8, "conditioning": "vcinr", "vcinr": {"hidden": 16, "rank": 2}},
        "meta": {"inner_steps": 2},
        "train": {"steps": 6, "batch_size": 4, "eval_every": 3, "eval_items": 12, "checkpoint_every": 3},
        "data": {"kind": "cifar10", "path": str(DATA / "cifar10"), "max_items": 32},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def torchrun(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "vcinr", "train", "--config", str(config), "--out", str(out), "--quiet", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_processes_match_one_and_resume(tmp_path):
    if not (DATA / "cifar10").is_dir():
        pytest.skip("CIFAR-10 test data not found")
    config = tiny_config(tmp_path)
    single, double = tmp_path / "single", tmp_path / "double"
    assert main(["train", "--config", str(config), "--out", str(single), "--quiet"]) == 0
    torchrun(config, double, "--steps", "3")
    assert [r["step"] for r in records(double)] == [0, 1, 2, 3]
    resumed = torchrun(config, double)  # resumes at step 3
    assert resumed.stdout.count("trained 6 steps") == 1, resumed.stdout  # rank 0 alone reports

    one, two = records(single), records(double)
    assert [r["step"] for r in two] == [r["step"] for r in one] == list(range(7))  # written once
    for a, b in zip(one, two):
        for key in ("loss", "psnr", "val_loss", "val_psnr"):
            assert (key in a) == (key in b)
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4), (a["step"], key)
    a, b = load_model(single).model.state_dict(), load_model(double).model.state_dict()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)


def test_batch_must_split_evenly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "3")  # as torchrun --nproc_per_node=3 would; refused before joining
    assert main(["train", "--config", str(tiny_config(tmp_path)), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "must be a multiple of the number of processes (3)" in capsys.readouterr().err
