"""Interrupted training loses nothing: SIGKILL or Ctrl-C mid-run, re-run, same final parameters."""

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
from vcinr.storage import load_state

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
    """The step of the checkpoint on disk (written atomically, so it can be read at any time)."""
    path = out / "checkpoint.safetensors"
    return load_state(path)[1]["step"] if path.is_file() else 0


def start_and_wait(config: Path, out: Path, step: int) -> subprocess.Popen:
    """Start a training run and return once it has checkpointed at least ``step`` steps."""
    proc = subprocess.Popen(train_cmd(config, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while last_step(out) < step and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run must still be running"
    return proc


def assert_resumes_bit_identically(config: Path, straight: Path, out: Path) -> None:
    subprocess.run(train_cmd(config, out), check=True, capture_output=True)
    a, b = load_model(straight).model.state_dict(), load_model(out).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run must end bit-identical on CPU"
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) and steps[-1] == STEPS


def test_sigkill_or_ctrl_c_then_rerun_matches_uninterrupted_run(tmp_path):
    config = write_config(tmp_path)
    straight, killed, stopped = tmp_path / "straight", tmp_path / "killed", tmp_path / "stopped"
    subprocess.run(train_cmd(config, straight), check=True, capture_output=True)

    proc = start_and_wait(config, killed, 6)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    interrupted_at = last_step(killed)
    assert 0 < interrupted_at < STEPS, "the run must be killed in the middle"
    assert not (killed / "model.safetensors").exists()
    assert [p.name for p in killed.iterdir() if p.name.startswith("checkpoint")] == ["checkpoint.safetensors"]
    assert_resumes_bit_identically(config, straight, killed)

    # Ctrl-C: the run finishes its step, checkpoints it, says so in one line and exits 130
    proc = start_and_wait(config, stopped, 6)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    stopped_at = last_step(stopped)
    assert 6 <= stopped_at < STEPS and f"stopped at step {stopped_at} of {STEPS}" in err and "resume" in err
    assert not (stopped / "model.safetensors").exists()
    metrics = [json.loads(line) for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == stopped_at  # nothing logged after the checkpoint is lost
    assert_resumes_bit_identically(config, straight, stopped)
