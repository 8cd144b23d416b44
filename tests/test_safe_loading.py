"""Models, codecs and checkpoints load from safetensors + JSON only, and refuse anything doubtful.

A model directory that is incomplete, of another format version or tampered with (weights
that do not match the fingerprint in config.json) is refused with one line; a pickle planted
where the weights belong is never executed; a checkpoint of another format is refused before
a run resumes from it.
"""

import json
import os
import pickle
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vcinr.errors import ConfigError, ModelError
from vcinr.meta.model import CONFIG_FILE, WEIGHTS_FILE, load_model
from vcinr.meta.run_directory import CHECKPOINT_FILE, METRICS_FILE, divergence_warning
from vcinr.meta.training import TrainResult
from vcinr.storage import fingerprint_file
from vcinr.training import train

SRC = Path(__file__).resolve().parents[1] / "src" / "vcinr"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def model_dir(tiny_cifar_model, tmp_path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(tiny_cifar_model, out)
    return out


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


class _Planted:
    """Unpickling this creates a marker file: proof that a pickle was executed."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / CONFIG_FILE).unlink(), "not a vcinr model directory"),
    (lambda d: (d / WEIGHTS_FILE).unlink(), "incomplete"),
    (lambda d: edit_json(d / CONFIG_FILE, format=99), "unsupported model format 99"),
    (lambda d: (d / CONFIG_FILE).write_text("{not json"), "not valid JSON"),
    (lambda d: flip_last_byte(d / WEIGHTS_FILE), "does not match the fingerprint"),
    (lambda d: edit_json(d / CONFIG_FILE, fingerprint="0" * 64), "does not match the fingerprint"),
    (lambda d: edit_json(d / CONFIG_FILE, item={"modality": "image"}), "item must have the fields"),
])
def test_incomplete_foreign_or_tampered_models_are_refused(model_dir, damage, message):
    load_model(model_dir)  # intact
    damage(model_dir)
    with pytest.raises(ModelError, match=message) as info:
        load_model(model_dir)
    assert "\n" not in str(info.value)


def edit_item(path: Path, **changes) -> None:
    meta = json.loads(path.read_text())
    meta["item"].update(changes)
    path.write_text(json.dumps(meta))


def edit_model(path: Path, key: str, value) -> None:
    meta = json.loads(path.read_text())
    meta["config"]["model"][key] = value
    path.write_text(json.dumps(meta))


def sparse(path: Path, size: int) -> None:
    path.unlink()
    with open(path, "wb") as f:
        f.truncate(size)


def symlink_loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path)


def fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


# issue 14: config.json is not covered by the fingerprint, so every value is range-checked and
# the network it implies must be the one the weights hold, before anything is allocated.
@pytest.mark.parametrize("damage, message", [
    (lambda d: edit_model(d / CONFIG_FILE, "width", 10**9), "model.width = 1000000000 is more than"),
    (lambda d: edit_model(d / CONFIG_FILE, "depth", 10**6), "model.depth = 1000000 is more than"),
    (lambda d: edit_model(d / CONFIG_FILE, "width", 20_000), "model.width = 20000 is more than"),
    (lambda d: edit_model(d / CONFIG_FILE, "width", 4096), "cannot load model"),  # within the caps: shapes differ
    (lambda d: edit_model(d / CONFIG_FILE, "width", -3), "model.width must be positive"),
    (lambda d: edit_model(d / CONFIG_FILE, "width", "wide"), "model.width must be a number"),
    (lambda d: edit_model(d / CONFIG_FILE, "width", 1e300), "model.width must be a finite number"),
    (lambda d: (d / CONFIG_FILE).write_text('{"format": 1, "x": ' + "9" * 5000 + "}"), "an integer of 5000 digits"),
    (lambda d: (d / CONFIG_FILE).write_text('{"format": 1, "x": ' + "[" * 900 + "]" * 900 + "}"), "nested deeper"),
    (lambda d: (d / CONFIG_FILE).write_text('{"format": 1, "x": NaN}'), "NaN is not a number"),
    (lambda d: edit_item(d / CONFIG_FILE, coord_range=["0", "1"]), "item.coord_range must be a number"),
    (lambda d: edit_item(d / CONFIG_FILE, item_shape=[1 << 20, 1 << 20]), "larger than vcinr codes"),
    (lambda d: edit_item(d / CONFIG_FILE, out_dim="3"), "item.out_dim must be an integer"),
    (lambda d: edit_item(d / CONFIG_FILE, modality="x\x1b[2J"), "item.modality must be one of"),
    (lambda d: edit_item(d / CONFIG_FILE, modality={}), "item.modality must be one of"),  # found by fuzz_readers
    (lambda d: sparse(d / WEIGHTS_FILE, 12 << 30), "larger than any weights file"),
    (lambda d: sparse(d / CONFIG_FILE, 12 << 30), "larger than any model config"),
    (lambda d: symlink_loop(d / WEIGHTS_FILE), "cannot open weights file"),
    (lambda d: fifo(d / WEIGHTS_FILE), "not a regular file"),
    (lambda d: fifo(d / CONFIG_FILE), "not a regular file"),
])
def test_hostile_model_configs_are_refused_before_allocating(model_dir, damage, message):
    damage(model_dir)
    started = time.perf_counter()
    with pytest.raises(ModelError, match=re.escape(message)) as info:
        load_model(model_dir)
    assert "\n" not in str(info.value)
    assert time.perf_counter() - started < 10.0


def test_a_planted_pickle_is_never_executed(model_dir, tmp_path):
    """Even with its fingerprint forged to match, a pickle in place of the weights is refused, not run."""
    marker = tmp_path / "pwned"
    planted = _Planted()
    planted.marker = marker
    (model_dir / WEIGHTS_FILE).write_bytes(pickle.dumps({"state0": planted}))
    edit_json(model_dir / CONFIG_FILE, fingerprint=fingerprint_file(model_dir / WEIGHTS_FILE))
    with pytest.raises(ModelError, match="cannot load model"):
        load_model(model_dir)
    assert not marker.exists()


def test_tampered_model_is_a_one_line_cli_error(model_dir, tmp_path, vcinr_main, capsys):
    flip_last_byte(model_dir / WEIGHTS_FILE)
    image = next(Path(__file__).resolve().parents[1].glob("src/vcinr/samples/**/*.png"), None)
    if image is None:
        pytest.skip("no bundled sample image")
    code = vcinr_main(["compress", str(image), "--model", str(model_dir), "-o", str(tmp_path / "x.vci"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "does not match the fingerprint" in err
    assert not (tmp_path / "x.vci").exists()


@pytest.mark.parametrize("damage", ["old two-file format", "truncated", "not safetensors"])
def test_foreign_or_damaged_checkpoints_are_refused(damage, tiny_config, data_dir, tmp_path):
    config = tiny_config("cifar10", data_dir / "cifar10", steps=2, max_items=16, batch_size=4, inner_steps=1)
    out = tmp_path / "run"
    train(config, out, progress=False)
    path = out / CHECKPOINT_FILE
    if damage == "old two-file format":  # tensors without the scalars in the metadata, as vcinr 0.1 wrote
        from safetensors.torch import load_file, save_file

        save_file(load_file(path), path)
        (out / "checkpoint.json").write_text(json.dumps({"step": 2}))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.write_bytes(pickle.dumps({"step": 2}))
    config.train.steps = 4
    with pytest.raises(ModelError, match="cannot resume from .*damaged or from another vcinr version") as info:
        train(config, out, progress=False)
    assert "\n" not in str(info.value)


def test_the_package_never_unpickles():
    """No pickle-based loader anywhere in the package: torch.load, pickle, numpy's allow_pickle."""
    pattern = re.compile(r"torch\.load\(|import pickle|from pickle|allow_pickle\s*=\s*True|joblib|dill")
    offenders = [f"{path.relative_to(SRC)}:{n}" for path in SRC.rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
    loaders = [f"{path.relative_to(SRC)}" for path in SRC.rglob("*.py") if "np.load(" in path.read_text()]
    for name in loaders:  # every numpy load says allow_pickle=False explicitly
        text = (SRC / name).read_text()
        assert text.count("np.load(") == text.count("allow_pickle=False"), name


@pytest.mark.parametrize("stem, changes", [
    ("learned-lambda0.001", {"lambda": "0.001"}),  # used to crash decompress after it had written its output
    ("learned-lambda0.001", {"lambda": None}),
    ("learned-lambda0.001", {"arch": {"width": 10**9, "blocks": 1, "z_dim": 8}}),
    ("learned-lambda0.001", {"latent_dim": 10**40}),
    ("uniform-6bit", {"bits": None}),
    ("uniform-6bit", {"clip": "wide"}),
    ("uniform-6bit", {"weights_fingerprint": "\x1b[2J"}),
])
def test_a_damaged_codec_level_is_treated_as_absent(stem, changes, tiny_cifar_codecs, tmp_path, vcinr_main, capsys):
    """A level whose JSON fails its schema is not listed; a stream made with it fails in one line, writing nothing."""
    from vcinr.codec.levels import list_levels

    model = tmp_path / "model"
    shutil.copytree(tiny_cifar_codecs, model)
    image = tmp_path / "in.png"
    Image.fromarray(np.load(DATA / "cifar10" / "test.npz")["images"][0]).save(image)
    quality = "2" if stem.startswith("learned") else "u6"
    assert vcinr_main(["compress", str(image), "--model", str(model), "--quality", quality, "-o",
                       str(tmp_path / "x.vci"), "--quiet"]) == 0
    path = model / "codecs" / f"{stem}.json"
    info = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps({k: v for k, v in info.items() if v is not None}))
    assert stem not in [level.stem for level in list_levels(load_model(model))]
    capsys.readouterr()
    code = vcinr_main(["decompress", str(tmp_path / "x.vci"), "--model", str(model), "-o", str(tmp_path / "y.png")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "does not have" in err, err
    assert not (tmp_path / "y.png").exists()


def rewrite_state(path: Path, text: str) -> None:
    """Replace a checkpoint's scalars by ``text`` (raw JSON), keeping its tensors."""
    from safetensors.torch import load_file, save_file

    from vcinr.storage import STATE_KEY

    save_file(load_file(path), path, metadata={STATE_KEY: text})


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update(step=-1), "checkpoint step must be an integer"),
    (lambda s: s.update(step=10**15), "checkpoint step must be an integer"),
    (lambda s: s.update(step="2"), "checkpoint step must be an integer"),
    (lambda s: s.update(elapsed="NaN"), "NaN is not a number"),
    (lambda s: s.update(elapsed=-5.0), "checkpoint elapsed must be seconds"),
    (lambda s: s["param_groups"][0].update(lr="NaN"), "NaN is not a number"),
    (lambda s: s["param_groups"][0].update(lr=-1.0), "checkpoint learning rate must be"),
    (lambda s: s["param_groups"][0].update(betas=[0.9, "Infinity"]), "Infinity is not a number"),
    (lambda s: s.update(initial={"psnr": "high"}), "initial metrics must be an object of numbers"),
])
def test_tampered_checkpoint_scalars_are_refused(edit, message, tiny_config, data_dir, tmp_path):
    """Issue 14: a negative step, NaN learning rate or time were tracebacks; step 10^15 'trained' 10^15 steps."""
    config = tiny_config("cifar10", data_dir / "cifar10", steps=2, max_items=16, batch_size=4, inner_steps=1)
    out = tmp_path / "run"
    train(config, out, progress=False)
    path = out / CHECKPOINT_FILE
    from vcinr.storage import load_state

    scalars = load_state(path)[1]
    edit(scalars)
    rewrite_state(path, json.dumps(scalars).replace('"NaN"', "NaN").replace('"Infinity"', "Infinity"))
    config.train.steps = 4
    with pytest.raises(ModelError, match=f"cannot resume from .*{message}.*delete it to start over") as info:
        train(config, out, progress=False)
    assert "\n" not in str(info.value)


def test_stale_checkpoint_temporaries_are_removed_and_files_respect_the_umask(tiny_config, data_dir, tmp_path):
    """A SIGKILL during a checkpoint write left a 0-byte .tmp forever; files were written 0600."""
    config = tiny_config("cifar10", data_dir / "cifar10", steps=2, max_items=16, batch_size=4, inner_steps=1)
    out = tmp_path / "run"
    out.mkdir()
    stale = out / f".{CHECKPOINT_FILE}.0badf00d.tmp"
    stale.write_bytes(b"")
    previous = os.umask(0o022)
    try:
        train(config, out, progress=False)
    finally:
        os.umask(previous)
    assert not stale.exists()
    for name in (WEIGHTS_FILE, CONFIG_FILE, CHECKPOINT_FILE):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name


# --- a run directory's own files, read again on resume (issue 14) -------------------------------


@pytest.fixture(scope="module")
def finished_run(tiny_config, data_dir, tmp_path_factory) -> Path:
    """A 2-step run with its checkpoint, train_config.json and metrics.jsonl."""
    config = tiny_config("cifar10", data_dir / "cifar10", steps=2, max_items=16, batch_size=4, inner_steps=1)
    out = tmp_path_factory.mktemp("finished") / "run"
    train(config, out, progress=False)
    return out


def resume(run: Path, tiny_config, data_dir) -> TrainResult:
    """Resume ``run`` (the config of :func:`finished_run`) for one more step."""
    config = tiny_config("cifar10", data_dir / "cifar10", steps=2, max_items=16, batch_size=4, inner_steps=1)
    config.train.steps = 3
    return train(config, run, progress=False)


@pytest.mark.parametrize("damage, error, message", [
    (lambda p: p.write_text("[" * 100_000 + "]" * 100_000), ModelError, "nested deeper than 32 levels"),
    (lambda p: sparse(p, 12 << 30), ModelError, "larger than any recorded run config vcinr reads"),
    (fifo, ModelError, "not a regular file"),
    (lambda p: p.write_text("[1, 2]"), ConfigError, "holds a run with a different config"),
    (lambda p: p.write_text('{"train": 5}'), ConfigError, "holds a run with a different config"),
])
def test_a_damaged_recorded_run_config_is_one_line(damage, error, message, finished_run, tiny_config, data_dir,
                                                   tmp_path):
    """train_config.json was read whole and walked as a dict: RecursionError, TypeError, AttributeError."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    damage(run / "train_config.json")
    with pytest.raises(error, match=message) as info:
        resume(run, tiny_config, data_dir)
    assert "\n" not in str(info.value)


def test_damaged_metrics_lines_are_dropped_on_resume_and_ignored_by_the_hint(finished_run, tiny_config, data_dir,
                                                                             tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    metrics = run / METRICS_FILE
    good = metrics.read_text()
    metrics.write_text(good + "[" * 100_000 + "]" * 100_000 + '\n{"step": "x"}\n[1]\n{"step": 1, "val_psnr": "high"')
    assert divergence_warning(run, {"psnr": -100.0}) is not None  # from the good lines alone
    assert resume(run, tiny_config, data_dir).steps == 3
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert records[:-1] == [json.loads(line) for line in good.splitlines()] and records[-1]["step"] == 3


@pytest.mark.parametrize("damage, message", [
    (lambda p: sparse(p, (1 << 30) + 1), "larger than any metrics log vcinr reads"),
    (fifo, "not a regular file"),  # the next log line would block on it forever
])
def test_a_metrics_log_that_is_not_a_log_is_refused_on_resume(damage, message, finished_run, tiny_config, data_dir,
                                                              tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    damage(run / METRICS_FILE)
    with pytest.raises(ModelError, match=message) as info:
        resume(run, tiny_config, data_dir)
    assert "\n" not in str(info.value)
    assert divergence_warning(run, {"psnr": -100.0}) is None  # a hint, never a failure after the run


def test_the_resume_message_survives_a_nested_checkpoint_state(finished_run, tmp_path):
    from vcinr.storage import state_step

    path = tmp_path / CHECKPOINT_FILE
    shutil.copyfile(finished_run / CHECKPOINT_FILE, path)
    assert state_step(path) == 2
    rewrite_state(path, "[" * 100_000 + "]" * 100_000)  # a RecursionError traceback before the run started
    assert state_step(path) is None


def test_fit_codec_recomputes_a_damaged_latents_cache_and_restarts_from_a_damaged_checkpoint(tiny_cifar_model,
                                                                                           tmp_path):
    from vcinr.codec import fit

    model = tmp_path / "model"
    shutil.copytree(tiny_cifar_model, model)
    settings = fit.FitSettings(lambdas=(), bits=(4,), max_items=32, eval_items=16)
    fit.fit_codecs(model, settings=settings, progress=False)
    codecs = model / "codecs"
    sparse(codecs / fit.LATENTS_FILE, 12 << 30)  # was loaded whole
    (codecs / ".ckpt-learned-lambda0.01.safetensors").touch()
    sparse(codecs / ".ckpt-learned-lambda0.01.safetensors", 3 << 30)
    learned = fit.FitSettings(lambdas=(0.01,), bits=(4,), steps=4, batch_size=8, max_items=32, eval_items=16)
    result = fit.fit_codecs(model, settings=learned, progress=False)
    assert {lv.stem: lv.status for lv in result.levels} == {"uniform-4bit": "skipped", "learned-lambda0.01": "fitted"}
    assert (codecs / fit.LATENTS_FILE).stat().st_size < 1 << 20  # recomputed and rewritten
    (codecs / fit.LATENTS_JSON).write_text("[" * 100_000 + "]" * 100_000)  # was a RecursionError
    fit.fit_codecs(model, settings=fit.FitSettings(lambdas=(), bits=(5,), max_items=32, eval_items=16),
                   progress=False)
    assert json.loads((codecs / fit.LATENTS_JSON).read_text())["items"] == 32
