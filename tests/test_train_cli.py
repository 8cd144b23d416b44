"""`vcinr train` end to end: model files, metrics, resume, bad input as one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from vcinr.cli import main
from vcinr.meta.model import load_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def tiny_config(tmp_path: Path, steps: int = 6, **model) -> Path:
    config = {
        "model": {"width": 16, "depth": 2, "latent_dim": 8, "conditioning": "vcinr",
                  "vcinr": {"hidden": 16, "rank": 2}, **model},
        "meta": {"inner_steps": 2},
        "train": {"steps": steps, "batch_size": 4, "eval_every": 3, "eval_items": 8, "checkpoint_every": 3},
        "data": {"kind": "cifar10", "path": str(DATA / "cifar10"), "max_items": 32},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("conditioning", ["functa", "mscn", "vcinr"])
def test_train_writes_a_loadable_model_and_metrics(tmp_path, conditioning, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(tiny_config(tmp_path, conditioning=conditioning)), "--out", str(out), "--quiet"]) == 0
    assert "test psnr after 2 inner steps" in capsys.readouterr().out
    loaded = load_model(out)
    assert loaded.spec.modality == "image" and loaded.spec.item_shape == (32, 32)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 7))
    assert records[0]["step"] == 0 and "val_psnr" in records[0]  # the untrained baseline
    assert all(torch.isfinite(p).all() for p in loaded.model.parameters())


def test_rerun_resumes_and_matches_an_uninterrupted_run(tmp_path):
    config = tiny_config(tmp_path, steps=6)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "--config", str(config), "--out", str(straight), "--quiet"]) == 0
    assert main(["train", "--config", str(config), "--out", str(resumed), "--steps", "3", "--quiet"]) == 0
    assert main(["train", "--config", str(config), "--out", str(resumed), "--quiet"]) == 0
    a, b = load_model(straight).model.state_dict(), load_model(resumed).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(steps) == len(set(steps))


def test_training_split_over_threads_repeats_exactly(tmp_path, monkeypatch):
    """With 2 torch threads each step splits its batch over 2 threads (MSCN: noise per part);
    a run stopped and resumed still equals an uninterrupted one bit for bit."""
    import vcinr.meta.training as training

    used = []
    original = training.meta_backward
    monkeypatch.setattr(training, "meta_backward",
                        lambda *args, **kwargs: used.append(args[4]) or original(*args, **kwargs))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        config = tiny_config(tmp_path, steps=4, conditioning="mscn")
        straight, resumed = tmp_path / "straight", tmp_path / "resumed"
        assert main(["train", "--config", str(config), "--out", str(straight), "--quiet"]) == 0
        assert main(["train", "--config", str(config), "--out", str(resumed), "--steps", "2", "--quiet"]) == 0
        assert main(["train", "--config", str(config), "--out", str(resumed), "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert used == [2] * 8
    a, b = load_model(straight).model.state_dict(), load_model(resumed).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_with_another_config_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(tiny_config(tmp_path)), "--out", str(out), "--steps", "1", "--quiet"]) == 0
    code = main(["train", "--config", str(tiny_config(tmp_path)), "--out", str(out), "--set", "model.width=32", "--quiet"])
    assert code == 2 and "different config" in capsys.readouterr().err


def test_resuming_may_validate_and_checkpoint_at_other_intervals(tmp_path):
    out, config = tmp_path / "run", str(tiny_config(tmp_path))
    assert main(["train", "--config", config, "--out", str(out), "--steps", "1", "--quiet"]) == 0
    assert main(["train", "--config", config, "--out", str(out), "--steps", "3", "--quiet",
                 "--set", "train.eval_every=2", "--set", "train.checkpoint_every=9"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "val_psnr" in r and r["step"] > 1] == [2, 3]


def test_a_patch_range_is_what_the_model_and_its_codecs_use(tmp_path):
    out = tmp_path / "run"
    config = str(tiny_config(tmp_path))
    assert main(["train", "--config", config, "--out", str(out), "--steps", "1", "--quiet",
                 "--set", "data.patch=[16,16]", "--set", "data.patch_range=[0.25,0.75]"]) == 0
    assert load_model(out).spec.coord_range == (0.25, 0.75)


def test_a_run_recorded_before_a_data_key_existed_still_resumes(tmp_path):
    out, config = tmp_path / "run", str(tiny_config(tmp_path))
    assert main(["train", "--config", config, "--out", str(out), "--steps", "1", "--quiet"]) == 0
    recorded = json.loads((out / "train_config.json").read_text())
    del recorded["data"]["patch_range"]  # as written by a version without data.patch_range
    (out / "train_config.json").write_text(json.dumps(recorded))
    assert main(["train", "--config", config, "--out", str(out), "--steps", "2", "--quiet"]) == 0
    assert load_model(out).spec.coord_range is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", "no-such-preset"], "no config file or preset"),
        (["--config", "cifar10-tiny", "--data", "/nonexistent/cifar"], "/nonexistent/cifar"),
        (["--config", "cifar10-tiny", "--set", "model.widht=3"], "unknown config key 'model.widht'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "vcinr", "train", *args, "--out", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_every_subcommand_has_help():
    for command in ([], ["train"], ["presets"], ["demo"]):
        proc = subprocess.run([sys.executable, "-m", "vcinr", *command, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "usage: vcinr" in proc.stdout
    version = subprocess.run([sys.executable, "-m", "vcinr", "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("vcinr ")


def test_init_starts_from_another_models_weights_and_refuses_another_network(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["train", "--config", str(tiny_config(tmp_path, steps=9)), "--out", str(first), "--quiet"]) == 0
    assert main(["train", "--config", str(tiny_config(tmp_path, steps=3)), "--out", str(second), "--init", str(first),
                 "--quiet"]) == 0
    def val(run):
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if "val_psnr" in line]
    # the second run's untrained baseline is the first run's final model, not a fresh initialisation
    assert val(second)[0]["val_psnr"] == pytest.approx(val(first)[-1]["val_psnr"], abs=1e-4)
    capsys.readouterr()
    wider = tmp_path / "wider"
    assert main(["train", "--config", str(tiny_config(tmp_path, steps=3, width=24)), "--out", str(wider),
                 "--init", str(first), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "differs from this config" in err and len(err.splitlines()) == 1


def test_a_run_recorded_before_an_option_existed_still_resumes(tmp_path):
    out = tmp_path / "run"
    config = tiny_config(tmp_path, steps=3)
    assert main(["train", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    recorded = json.loads((out / "train_config.json").read_text())
    del recorded["train"]["init_from"]  # as written by a vcinr without train.init_from
    (out / "train_config.json").write_text(json.dumps(recorded))
    assert main(["train", "--config", str(config), "--out", str(out), "--steps", "6", "--quiet"]) == 0


def test_weight_average_is_what_validation_scores_and_the_run_writes(tmp_path, capsys):
    """``train.ema_decay``: the model written is the checkpoint's average, not its raw weights,
    and a run stopped and resumed averages exactly as an uninterrupted one."""
    from vcinr.storage import load_state

    config, ema = tiny_config(tmp_path, steps=6), ["--set", "train.ema_decay=0.5"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "--config", str(config), "--out", str(straight), "--quiet", *ema]) == 0
    tensors, _ = load_state(straight / "checkpoint.safetensors")
    written = load_model(straight).model.state_dict()
    assert all(torch.equal(written[k], tensors[f"ema.module.{k}"]) for k in written)
    assert not all(torch.equal(written[k], tensors[f"model.{k}"]) for k in written)
    assert main(["train", "--config", str(config), "--out", str(resumed), "--steps", "3", "--quiet", *ema]) == 0
    assert main(["train", "--config", str(config), "--out", str(resumed), "--quiet", *ema]) == 0
    again = load_model(resumed).model.state_dict()
    assert all(torch.equal(written[k], again[k]) for k in written)
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "bad"), "--quiet",
                 "--set", "train.ema_decay=1.0"]) == 2
    assert "train.ema_decay must be in (0, 1)" in capsys.readouterr().err
