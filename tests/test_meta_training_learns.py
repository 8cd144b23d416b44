"""Meta-learning does what Algorithm 1 promises: after outer steps, k inner steps from the
meta-learned initialisation fit held-out items better than from the untrained one."""

import json

import pytest

from vcinr.cli import main
from tests.test_train_cli import tiny_config


@pytest.mark.parametrize("conditioning", ["functa", "vcinr"])
def test_meta_training_lowers_the_validation_loss(tmp_path, conditioning):
    out = tmp_path / "run"
    config = tiny_config(tmp_path, steps=150, conditioning=conditioning)
    assert main(["train", "--config", str(config), "--out", str(out), "--quiet",
                 "--set", "train.eval_every=150", "--set", "train.outer_lr=0.003"]) == 0
    evals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "val_loss" in r]
    assert [r["step"] for r in evals] == [0, 150]
    assert evals[1]["val_loss"] < 0.8 * evals[0]["val_loss"]
