"""Hostile inputs to ``vcinr compress``/``decompress``/``train`` through the real CLI entry point.

Every case must end in exactly one line on stderr, exit code 2, no traceback, and no output
file (not even a temporary one) in the output folder.  Reader-level cases (every modality's
corrupt files) are in test_modalities.py and the container's in test_codec_bitstream.py and
test_fuzz_bitstream.py; this is the matrix a user meets on the command line.
"""

import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from vcinr.codec.fit import FitSettings, fit_codecs
from vcinr.signal import MAX_POINTS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width × height`` pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def cifar_png(path: Path, index: int = 0) -> Path:
    Image.fromarray(np.load(DATA / "cifar10" / "test.npz")["images"][index]).save(path)
    return path


def write(name: str, content: bytes):
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(content)
        return folder / name

    return make


def image(name: str, size: tuple[int, int], mode: str = "RGB", **save):
    def make(folder: Path) -> Path:
        Image.new(mode, size, 128).save(folder / name, **save)
        return folder / name

    return make


def truncated_png(folder: Path) -> Path:
    data = cifar_png(folder / "whole.png").read_bytes()
    (folder / "whole.png").unlink()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    return folder / "cut.png"


def directory(name: str):
    def make(folder: Path) -> Path:
        (folder / name).mkdir()
        return folder / name

    return make


def symlink_loop(name: str):
    def make(folder: Path) -> Path:
        (folder / name).symlink_to(folder / name)
        return folder / name

    return make


def fifo(name: str):
    def make(folder: Path) -> Path:
        os.mkfifo(folder / name)
        return folder / name

    return make


def copy_of(relative: str, name: str):
    def make(folder: Path) -> Path:
        shutil.copyfile(DATA / relative, folder / name)
        return folder / name

    return make


def run_cli(vcinr_main, capsys, argv: list[str]) -> str:
    code = vcinr_main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, code, err)
    assert err.count("\n") == 1 and err.startswith(f"vcinr {argv[0]}: error: ") and "Traceback" not in err, err
    return err


COMPRESS_CASES = {
    "empty file": (write("empty.png", b""), "not a readable image file"),
    "text named .png": (write("notes.png", b"hello, not an image\n"), "not a readable image file"),
    "truncated PNG": (truncated_png, "not a readable image file"),
    "audio named .png": (copy_of("librispeech/test-other/367/367-130732-0006.flac", "sound.png"),
                         "not a readable image file"),
    "PNG named .wav (wrong modality)": (copy_of("kodak/kodim01.png", "picture.wav"), "is not image data"),
    "unreadable (a directory)": (directory("folder.png"), "is a directory"),
    "1 pixel": (image("dot.png", (1, 1)), "only codes image signals of exactly [32, 32]"),
    "huge dimensions (header only)": (write("bomb.png", png_claiming(100_000, 100_000)), "decompression bomb"),
    "just over the point limit": (write("big.png", png_claiming(MAX_POINTS // 4096 + 1, 4096)), "more than vcinr reads"),
    "16-bit channels": (image("deep.png", (32, 32), "I;16"), "not supported"),
    "wrong channel count (gray)": (image("gray.png", (32, 32), "L"), "1 channel but the model was trained on 3"),
    "symlink loop": (symlink_loop("loop.png"), "Too many levels of symbolic links"),
    "a FIFO (would block)": (fifo("pipe.png"), "not a regular file"),
}


@pytest.mark.parametrize("case", list(COMPRESS_CASES))
def test_compress_refuses_hostile_files(case, tiny_cifar_codecs, tmp_path, vcinr_main, capsys):
    make, message = COMPRESS_CASES[case]
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    path = make(inputs)
    err = run_cli(vcinr_main, capsys, ["compress", str(path), "--model", str(tiny_cifar_codecs),
                                       "-o", str(out / "x.vci"), "--quiet"])
    assert message in err, err
    assert list(out.iterdir()) == []  # no partial or temporary file


@pytest.fixture(scope="module")
def sphere_codecs(tiny_model_factory, tiny_config, data_dir, tmp_path_factory):
    # the sphere model of test_pipeline.py (same name and config: trained once per session)
    config = tiny_config("sphere", data_dir / "era5" / "samples.npz", steps=30, batch_size=4)
    out = tmp_path_factory.mktemp("sphere-hostile") / "model"
    shutil.copytree(tiny_model_factory("era5", config), out)
    fit_codecs(out, settings=FitSettings(lambdas=(0.01,), bits=(6,), steps=30, lr=1e-2, batch_size=8,
                                         max_items=64, eval_items=16), progress=False)
    return out


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_compress_refuses_non_finite_fields(value, sphere_codecs, data_dir, tmp_path, vcinr_main, capsys):
    with np.load(data_dir / "era5" / "samples.npz") as src:
        arrays = {k: src[k] for k in src.files}
    arrays["temperature_normalized"][0, 10, 20] = value
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    np.savez(inputs / "field.npz", **arrays)
    err = run_cli(vcinr_main, capsys, ["compress", str(inputs / "field.npz"), "--model", str(sphere_codecs),
                                       "-o", str(out / "x.vci"), "--quiet"])
    assert "NaN or infinite" in err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("make, message", [
    (write("empty.vci", b""), "not a vcinr bitstream"),
    (directory("folder.vci"), "no such file"),
    (write("short.vci", b"VCI\x1a\x01"), "truncated bitstream"),
])
def test_decompress_refuses_hostile_files(make, message, tiny_cifar_codecs, tmp_path, vcinr_main, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    err = run_cli(vcinr_main, capsys, ["decompress", str(make(inputs)), "--model", str(tiny_cifar_codecs),
                                       "-o", str(out / "x.png"), "--quiet"])
    assert message in err
    assert list(out.iterdir()) == []


# --- vcinr train: hostile configs and data ------------------------------------------------------


def tiny_yaml(folder: Path, **sections) -> Path:
    config = {
        "model": {"width": 16, "depth": 2, "latent_dim": 8, "vcinr": {"hidden": 16, "rank": 2}},
        "meta": {"inner_steps": 1},
        "train": {"steps": 2, "batch_size": 4, "eval_every": 2, "eval_items": 4, "checkpoint_every": 2},
        "data": {"kind": "cifar10", "path": str(DATA / "cifar10"), "max_items": 16},
    }
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def corrupt_cifar(folder: Path) -> Path:
    (folder / "cifar").mkdir()
    (folder / "cifar" / "train.npz").write_bytes(b"PK\x03\x04 truncated zip")
    (folder / "cifar" / "test.npz").write_bytes(b"")
    return folder / "cifar"


TRAIN_CASES = {
    "unknown nested key": (["--set", "train.stpes=3"], "unknown config key 'train.stpes'"),
    "unknown section": (["--set", "optimiser.lr=3"], "unknown config key 'optimiser'"),
    "NaN learning rate": (["--set", "train.outer_lr=.nan"], "train.outer_lr must be a finite number"),
    "infinite width": (["--set", "model.width=.inf"], "model.width must be a finite number"),
    "absurd step count": (["--set", "train.steps=1e30"], "train.steps must be a finite number"),
    "invalid YAML in --set": (["--set", "model.width=[unclosed"], "--set model.width: not valid YAML"),  # a traceback
    "deep nesting in --set": (["--set", "model.width=" + "[" * 3000 + "]" * 3000],
                              "--set model.width: nested deeper than 32 levels"),  # a RecursionError
    "--set into a number": (["--set", "model.width.x=1"], "model.width is not a section"),  # a TypeError
    "fractional width": (["--set", "model.width=2.5"], "model.width must be an integer"),
    "text for a number": (["--set", "train.batch_size=many"], "train.batch_size must be a number"),
    "negative gradient clip": (["--set", "train.grad_clip=-1"], "train.grad_clip must be positive"),
    "zero width": (["--set", "model.width=0"], "model.width must be positive"),
    "test fraction above 1": (["--set", "data.test_fraction=2"], "data.test_fraction must be in [0, 1]"),
    "patches too large for memory": (["--set", "data.patch=[100000,100000]"], "out of memory"),
    "empty data folder": (["--data", "{empty}"], "no CIFAR-10 train data"),
    "corrupt data files": (["--data", "{corrupt}"], "not a readable"),
    "data of another modality": (["--data", str(DATA / "librispeech")], "no CIFAR-10 train data"),
    "missing data": (["--data", "{tmp}/nowhere"], "no such file or directory"),
}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_train_refuses_hostile_configs_and_data(case, tmp_path, vcinr_main, capsys):
    if not (DATA / "cifar10").is_dir():
        pytest.skip("test data not found")
    args, message = TRAIN_CASES[case]
    (tmp_path / "empty").mkdir()
    subs = {"{empty}": str(tmp_path / "empty"), "{corrupt}": str(corrupt_cifar(tmp_path)), "{tmp}": str(tmp_path)}
    args = [next((a.replace(k, v) for k, v in subs.items() if k in a), a) for a in args]
    out = tmp_path / "run"
    err = run_cli(vcinr_main, capsys, ["train", "--config", str(tiny_yaml(tmp_path)), "--out", str(out), "--quiet",
                                       *args])
    assert message in err, err
    assert not out.exists() or not {"model.safetensors", "checkpoint.safetensors"} & {p.name for p in out.iterdir()}


@pytest.mark.parametrize("content, message", [
    (b"- just\n- a list\n", "config must be a mapping"),
    (b"model: {width: [unclosed\n", "not valid YAML"),
    (b"\x00\xff\xfe binary", "not valid YAML"),
])
def test_train_refuses_malformed_config_files(content, message, tmp_path, vcinr_main, capsys):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    err = run_cli(vcinr_main, capsys, ["train", "--config", str(path), "--out", str(tmp_path / "run"), "--quiet"])
    assert message in err, err


def test_a_failed_first_run_does_not_block_a_corrected_one(tmp_path, vcinr_main, capsys):
    """A run that failed before its first checkpoint leaves nothing to resume: the fixed config just runs."""
    out = tmp_path / "run"
    config = tiny_yaml(tmp_path)
    run_cli(vcinr_main, capsys, ["train", "--config", str(config), "--out", str(out), "--quiet",
                                 "--set", "train.batch_size=100000000"])  # out of memory in the first step
    assert vcinr_main(["train", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    steps = [yaml.safe_load(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2]


@pytest.mark.parametrize("changes, message", [
    ({"max": 1e100}, "does not fit the float32"),
    ({"layout": "simple", "dtype": "object"}, "'dtype' must name a numeric dtype"),
    ({"source_index": 2**40}, "'source_index' must be an integer"),
    ({"latitude": {"a": 1}}, "'latitude' must be a list"),
])
def test_decompress_refuses_forged_meta_the_writer_cannot_honour(changes, message, sphere_codecs, data_dir, tmp_path,
                                                                  vcinr_main, capsys):
    """Meta forged with a valid CRC: the writer refuses it in one line and writes nothing (issue 14)."""
    from vcinr.codec.bitstream import pack, unpack

    out = tmp_path / "out"
    out.mkdir()
    assert vcinr_main(["compress", str(data_dir / "era5" / "samples.npz"), "--model", str(sphere_codecs),
                       "-o", str(tmp_path / "x.vci"), "--quiet"]) == 0
    header, payload = unpack((tmp_path / "x.vci").read_bytes())
    header.meta.update(changes)
    (tmp_path / "forged.vci").write_bytes(pack(header, payload))
    capsys.readouterr()
    err = run_cli(vcinr_main, capsys, ["decompress", str(tmp_path / "forged.vci"), "--model", str(sphere_codecs),
                                       "-o", str(out / "field.npz"), "--quiet"])
    assert message in err, err
    assert list(out.iterdir()) == []


def test_os_errors_are_one_escaped_line_with_exit_2(tmp_path, vcinr_main, capsys):
    """Issue 14: OS errors exited 1 and printed the file name raw (a newline and an escape split the line)."""
    out = "/dev/null/run\n\x1b[2Jx"  # mkdir below /dev/null: NotADirectoryError naming this path
    err = run_cli(vcinr_main, capsys, ["train", "--config", str(tiny_yaml(tmp_path)), "--out", out, "--quiet"])
    assert "Not a directory" in err and "\\n\\x1b[2Jx" in err, err


def test_library_warnings_do_not_reach_stderr():
    """Issue 14: Pillow's and numpy's warnings were extra lines on stderr; the CLI silences them.

    In a child process: pytest would capture the warning itself and hide the difference.
    """
    script = ("import sys, warnings\n"
              "import vcinr.config, vcinr.cli\n"
              "def listing():\n"
              "    warnings.warn('a library warning', UserWarning)\n"
              "    return ['preset']\n"
              "vcinr.config.preset_names = listing\n"
              "sys.exit(vcinr.cli.main(['presets']))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout == "preset\n" and run.stderr == "", run.stderr
