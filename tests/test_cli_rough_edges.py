"""What a new user meets first: start-up cost, --model names, output paths, Ctrl-C, resume, sizes.

Each failure must be one line on stderr with exit code 2, and output paths must be refused
*before* any encoding (the tests make the encoder raise if it is ever reached).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vcinr.pipeline
from vcinr.modalities import get_modality

SAMPLE_IMAGE = Path(__file__).resolve().parents[1] / "src" / "vcinr" / "samples" / "demo" / "kodim20-crop.png"


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1, err
    return lines[0]


def test_help_does_not_import_torch_or_the_media_libraries():
    """``vcinr --help`` (and each subcommand's) must not pay for torch (~1 s or more) or PyAV/SciPy."""
    code = ("import sys\nfrom vcinr.cli import main\n"
            "for argv in (['--help'], ['compress', '--help'], ['make-scenes', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'av', 'scipy', 'matplotlib', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_compress_imports_no_media_library_it_does_not_use():
    """Reaching compress's work imports torch, but not PyAV, SciPy or matplotlib."""
    code = ("import sys\nimport vcinr.bundled, vcinr.pipeline, vcinr.cli.codec\n"
            "print(sorted(m for m in ('av', 'scipy', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_bad_output_is_refused_before_torch_is_imported(tmp_path):
    code = ("import sys\nfrom vcinr.cli import main\n"
            f"rc = main(['compress', {str(SAMPLE_IMAGE)!r}, '-o', {str(tmp_path / 'out.png')!r}])\n"
            "print(rc, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["2", "False"] and "written as .vci" in done.stderr


@pytest.fixture
def no_encoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the output path should have been refused before encoding")

    monkeypatch.setattr(vcinr.pipeline, "compress_file", fail)
    monkeypatch.setattr(vcinr.pipeline, "decompress_file", fail)


@pytest.mark.parametrize("name, message", [
    ("missing/out.vci", "does not exist"),
    ("out.png", "written as .vci, not '.png'"),
    ("out", "written as .vci, not '(no suffix)'"),
    ("folder.vci", "is a directory"),
])
def test_compress_refuses_bad_outputs_before_encoding(vcinr_main, no_encoding, tmp_path, capsys, name, message):
    (tmp_path / "folder.vci").mkdir()
    assert vcinr_main(["compress", str(SAMPLE_IMAGE), "-o", str(tmp_path / name), "--quiet"]) == 2
    assert message in one_line(capsys.readouterr().err)
    assert not (tmp_path / "missing").exists()


def test_unwritable_output_is_one_line_before_encoding(vcinr_main, no_encoding, capsys):
    assert vcinr_main(["compress", str(SAMPLE_IMAGE), "-o", "/proc/y.vci", "--quiet"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "/proc/y.vci: cannot write in /proc" in line and ".check" not in line


def test_decompress_refuses_a_missing_directory_before_decoding(vcinr_main, no_encoding, tmp_path, capsys):
    vci = tmp_path / "x.vci"
    vci.write_bytes(b"VCI\x1a")
    assert vcinr_main(["decompress", str(vci), "-o", str(tmp_path / "no" / "x.png"), "--quiet"]) == 2
    assert "does not exist" in one_line(capsys.readouterr().err)


def test_eval_takes_a_bundled_model_name(vcinr_main, monkeypatch, tmp_path):
    import vcinr.evaluate.harness as harness
    from vcinr.bundled import resolve_model

    seen = {}

    def fake_run_eval(model_dir, *args, **kwargs):
        seen["model"] = model_dir
        raise KeyboardInterrupt  # stop here: only the model argument is under test

    monkeypatch.setattr(harness, "run_eval", fake_run_eval)
    assert vcinr_main(["eval", str(SAMPLE_IMAGE), "--model", "image", "--out", str(tmp_path), "--quiet"]) == 130
    assert seen["model"] == resolve_model("image") and (seen["model"] / "model.safetensors").is_file()


def test_fit_codec_explains_that_bundled_models_are_read_only(vcinr_main, capsys):
    assert vcinr_main(["fit-codec", "--model", "image", "--quiet"]) == 2
    assert "is a bundled model, which fit-codec does not change: copy it" in one_line(capsys.readouterr().err)


def test_ctrl_c_message_starts_on_its_own_line(vcinr_main, monkeypatch, capsys):
    import vcinr.cli.train
    from tqdm import tqdm

    def interrupted(args):
        bar = tqdm(total=10, desc="work")
        bar.update(3)
        raise KeyboardInterrupt

    monkeypatch.setattr(vcinr.cli.train, "_cmd_presets", interrupted)
    assert vcinr_main(["presets"]) == 130
    err = capsys.readouterr().err
    assert err.endswith("\nvcinr presets: interrupted\n"), repr(err)


def test_train_resume_step_is_read_from_the_checkpoint(tmp_path):
    from vcinr.meta.run_directory import CHECKPOINT_FILE
    from vcinr.storage import save_state, state_step

    path = tmp_path / CHECKPOINT_FILE
    assert state_step(path) is None
    save_state(path, {"x": torch.zeros(1)}, {"step": 120, "elapsed": 1.0})
    assert state_step(path) == 120
    path.write_bytes(b"damaged")
    assert state_step(path) is None  # train itself reports the damage


def test_sizes_read_width_by_height():
    assert get_modality("image").size_text((512, 768)) == "768×512"
    assert get_modality("video").size_text((24, 128, 160)) == "24 frames of 160×128"
    assert get_modality("audio").size_text((64000,)) == "64000"
