"""Interrupted training loses nothing: SIGKILL mid-run, re-run, same final parameters."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from vcinr.meta.model import load_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
STEPS = 60


def write_config(tmp_path: Path) -> Path:
    config = {
        "model": {"width": 16, "depth": 2, "latent_dim": 8, "conditioning": "vcinr", "vcinr": {"hidden": 16, "rank": 2}},
        "meta": {"inner_steps": 2},
        "train": {"steps": STEPS, "batch_size": 4, "eval_every": 100, "eval_items": 8, "checkpoint_every": 2},
        "data": {"kind": "cifar10", "path": str(DATA / "cifar10"), "max_items": 64},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train_cmd(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "vcinr", "train", "--config", str(config), "--out", str(out), "--quiet"]


def last_step(out: Path) -> int:
    state = out / "checkpoint.json"
    return json.loads(state.read_text())["step"] if state.is_file() else 0


def test_sigkill_then_rerun_matches_uninterrupted_run(tmp_path):
    config = write_config(tmp_path)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(train_cmd(config, straight), check=True, capture_output=True)

    proc = subprocess.Popen(train_cmd(config, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while last_step(killed) < 6 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted_at = last_step(killed)
    assert 0 < interrupted_at < STEPS, "the run must be killed in the middle"
    assert not (killed / "model.safetensors").exists()

    subprocess.run(train_cmd(config, killed), check=True, capture_output=True)
    a, b = load_model(straight).model.state_dict(), load_model(killed).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run must end bit-identical on CPU"
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == STEPS
