"""Models, codecs and checkpoints load from safetensors + JSON only, and refuse anything doubtful.

A model directory that is incomplete, of another format version or tampered with (weights
that do not match the fingerprint in config.json) is refused with one line; a pickle planted
where the weights belong is never executed; a checkpoint of another format is refused before
a run resumes from it.
"""

import json
import pickle
import re
import shutil
from pathlib import Path

import pytest

from vcinr.errors import ModelError
from vcinr.meta import training
from vcinr.meta.model import CONFIG_FILE, WEIGHTS_FILE, fingerprint_file, load_model

SRC = Path(__file__).resolve().parents[1] / "src" / "vcinr"


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
    (lambda d: edit_json(d / CONFIG_FILE, item={"modality": "image"}), "cannot load model"),
])
def test_incomplete_foreign_or_tampered_models_are_refused(model_dir, damage, message):
    load_model(model_dir)  # intact
    damage(model_dir)
    with pytest.raises(ModelError, match=message) as info:
        load_model(model_dir)
    assert "\n" not in str(info.value)


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
    training.train(config, out, progress=False)
    path = out / training.CHECKPOINT_FILE
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
        training.train(config, out, progress=False)
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
