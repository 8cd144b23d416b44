"""compress → .vci → decompress on real files: images (whole and patched), audio, video, the sphere, voxels.

Each test checks what a user relies on: the output has the original's shape and format, the
PSNR that ``compress`` reports is exactly the PSNR of the decompressed file against the
original, ``bpp == 8 · file size / points``, the entropy model's estimate matches the payload,
and decoding in another process is bit-identical.
"""

import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from vcinr.codec.fit import FitSettings, fit_codecs
from vcinr.meta.model import load_model
from vcinr.modalities import read_signal
from vcinr.pipeline import compress_file, decode_bytes, decompress_file, signal_quality

QUICK_FIT = FitSettings(lambdas=(0.01,), bits=(6,), steps=30, lr=1e-2, batch_size=8, max_items=64, eval_items=16)


def check_round_trip(report, original_path, decoded_path, loss="mse"):
    """The invariants every compress/decompress pair must satisfy."""
    size = report.output.stat().st_size
    assert report.bytes == size and report.bpp == 8 * size / report.points
    original, decoded = read_signal(original_path), read_signal(decoded_path)
    assert decoded.features.shape == original.features.shape
    metric, value = signal_quality(original, decoded, loss)
    assert metric == report.metric and value == report.value  # exactly what compress printed
    payload_bits = 8 * report.payload_bytes
    assert abs(payload_bits - report.estimated_bits) <= 64 + 0.01 * report.estimated_bits
    assert report.overhead_bytes < 200
    return original, decoded


@pytest.fixture(scope="module")
def cifar_png(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("cifar-png") / "cat.png"
    Image.fromarray(np.load(data_dir / "cifar10" / "test.npz")["images"][0]).save(path)
    return path


# --- CIFAR-10: whole 32×32 images -------------------------------------------------------------


def test_cifar_round_trip_at_every_kind_of_level(tiny_cifar_codecs, cifar_png, tmp_path):
    estimated = {}
    for quality in ("1", "3", "u3", "u8"):
        vci, out = tmp_path / f"q{quality}.vci", tmp_path / f"q{quality}.png"
        report = compress_file(cifar_png, tiny_cifar_codecs, quality, vci)
        decompress_file(vci, tiny_cifar_codecs, out)
        check_round_trip(report, cifar_png, out)
        with Image.open(out) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "RGB", (32, 32))
        assert report.patches == 1 and report.points == 1024 and report.kbps is None
        estimated[quality] = report.estimated_bits
    assert estimated["1"] < estimated["3"] and estimated["u3"] < estimated["u8"]


def test_decoding_in_another_process_is_bit_identical(tiny_cifar_codecs, cifar_png, tmp_path):
    vci = tmp_path / "x.vci"
    compress_file(cifar_png, tiny_cifar_codecs, "2", vci)
    decompress_file(vci, tiny_cifar_codecs, tmp_path / "here.png")
    signal, _, _ = decode_bytes(vci.read_bytes(), load_model(tiny_cifar_codecs))
    script = (
        "import sys, numpy as np\n"
        "from vcinr.meta.model import load_model\n"
        "from vcinr.pipeline import decode_bytes, decompress_file\n"
        "vci, model, out = sys.argv[1:4]\n"
        "decompress_file(vci, model, out + '.png')\n"
        "signal, _, _ = decode_bytes(open(vci, 'rb').read(), load_model(model))\n"
        "np.save(out + '.npy', signal.features.numpy())\n"
    )
    there = tmp_path / "there"
    subprocess.run([sys.executable, "-c", script, str(vci), str(tiny_cifar_codecs), str(there)], check=True,
                   env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"})
    assert np.array_equal(np.load(f"{there}.npy"), signal.features.numpy())  # float features, bit for bit
    assert (tmp_path / "there.png").read_bytes() == (tmp_path / "here.png").read_bytes()


def test_cli_compress_and_decompress_print_one_line_summaries(tiny_cifar_codecs, cifar_png, tmp_path, vcinr_main,
                                                              capsys):
    vci, out = tmp_path / "c.vci", tmp_path / "c.png"
    assert vcinr_main(["compress", str(cifar_png), "--model", str(tiny_cifar_codecs), "-q", "u6", "-o", str(vci),
                       "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "bpp" in line and "PSNR" in line and "u6" in line
    assert vcinr_main(["decompress", str(vci), "--model", str(tiny_cifar_codecs), "-o", str(out), "--quiet"]) == 0
    assert "32×32" in capsys.readouterr().out  # width×height
    psnr = float(line.split("PSNR ")[1].split(" dB")[0])
    assert signal_quality(read_signal(cifar_png), read_signal(out))[1] == pytest.approx(psnr, abs=0.005)


def test_bad_input_is_a_one_line_error(tiny_cifar_codecs, cifar_png, data_dir, tmp_path, vcinr_main, capsys):
    gray = tmp_path / "gray.png"
    Image.open(cifar_png).convert("L").save(gray)
    big = tmp_path / "big.png"
    Image.open(cifar_png).resize((64, 64)).save(big)
    flac = next((data_dir / "librispeech").rglob("*.flac"))
    model = str(tiny_cifar_codecs)
    cases = {
        "is not image data": ["compress", str(flac), "--model", model, "-o", str(tmp_path / "a.vci")],
        "1 channel but the model was trained on 3": ["compress", str(gray), "--model", model, "-o", str(tmp_path / "b.vci")],
        "only codes image signals of exactly [32, 32]": ["compress", str(big), "--model", model, "-o", str(tmp_path / "c.vci")],
        "neither a model directory nor a bundled model": ["compress", str(cifar_png), "--model", str(tmp_path / "nope"), "-o", str(tmp_path / "d.vci")],
        "no quality level '9'": ["compress", str(cifar_png), "--model", model, "-q", "9", "-o", str(tmp_path / "e.vci")],
        "no such file": ["compress", str(tmp_path / "missing.png"), "--model", model, "-o", str(tmp_path / "f.vci")],
        "not a vcinr bitstream": ["decompress", str(cifar_png), "--model", model, "-o", str(tmp_path / "g.png")],
        "cannot write image data as '.wav'": ["decompress", str(cifar_png), "--model", model, "-o", str(tmp_path / "h.wav")],
    }
    for expected, argv in cases.items():
        assert vcinr_main(argv + ["--quiet"]) == 2, expected
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png", "gray.png"]  # nothing else written


# --- patched images: a Kodak crop coded as 16×16 patches --------------------------------------


@pytest.fixture(scope="module")
def patched_model(tiny_model_factory, tiny_config, data_dir, tmp_path_factory):
    trained = tiny_model_factory("cifar-patch16", tiny_config("cifar10", data_dir / "cifar10", patch=[16, 16], steps=60))
    out = tmp_path_factory.mktemp("patched") / "model"
    shutil.copytree(trained, out)
    fit_codecs(out, settings=QUICK_FIT, progress=False)
    return out


def test_patched_kodak_crop_round_trip(patched_model, data_dir, tmp_path):
    crop = tmp_path / "crop.png"
    with Image.open(data_dir / "kodak" / "kodim01.png") as img:
        img.crop((300, 200, 356, 240)).save(crop)  # 56×40: not a multiple of the 16×16 patches
    assert load_model(patched_model).spec.coord_range == (0.0, 1.0)
    for quality in ("1", "u6"):
        vci, out = tmp_path / f"{quality}.vci", tmp_path / f"{quality}.png"
        report = compress_file(crop, patched_model, quality, vci)
        decompress_file(vci, patched_model, out)
        check_round_trip(report, crop, out)
        assert report.patches == 3 * 4 and report.grid_shape == (40, 56)
        assert report.value > 10.0  # decoded patches land where they belong
    # decoding to a lossless format other than the input's works too
    decompress_file(tmp_path / "u6.vci", patched_model, tmp_path / "u6.bmp")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "u6.bmp")), np.asarray(Image.open(tmp_path / "u6.png")))


# --- audio: LibriSpeech FLAC, 200-sample patches ----------------------------------------------


@pytest.fixture(scope="module")
def audio_model(tiny_model_factory, tiny_config, data_dir, tmp_path_factory):
    config = tiny_config("audio", data_dir / "librispeech" / "test-other" / "367", patch=[200], steps=40,
                         options={"clip_seconds": 0.5})
    out = tmp_path_factory.mktemp("audio") / "model"
    shutil.copytree(tiny_model_factory("audio", config), out)
    fit_codecs(out, settings=QUICK_FIT, progress=False)
    return out


def test_audio_round_trip(audio_model, data_dir, tmp_path):
    source = data_dir / "librispeech" / "test-other" / "367" / "367-130732-0006.flac"
    clip = tmp_path / "clip.flac"
    samples, rate = sf.read(source, dtype="int16", frames=12345)
    sf.write(clip, samples, rate, subtype="PCM_16")
    vci, out = tmp_path / "clip.vci", tmp_path / "out.flac"
    report = compress_file(clip, audio_model, "u6", vci)
    decompress_file(vci, audio_model, out)
    check_round_trip(report, clip, out)
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 12345, "PCM_16")
    assert report.patches == 62  # ceil(12345 / 200)
    assert report.kbps == pytest.approx(8 * report.bytes / (12345 / 16000) / 1000)
    assert "kbps" in report.summary()


# --- video: real clips, 2×8×8 patches, lossless FFV1 in Matroska ---------------------------


def test_video_round_trip(tiny_model_factory, tiny_config, data_dir, tmp_path):
    from vcinr.modalities import write_signal
    from vcinr.modalities.video import read_video

    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("realshort.mp4", "mmaction2_test.avi"):
        (clips / name).symlink_to(data_dir / "video" / name)
    config = tiny_config("video", clips, patch=[2, 8, 8], steps=20, batch_size=4,
                         options={"frames": 4, "size": 16, "clips_per_video": 2})
    model = tmp_path / "model"
    shutil.copytree(tiny_model_factory("video", config), model)
    fit_codecs(model, settings=QUICK_FIT, progress=False)
    # a held-out clip (the GIF was not among the training videos), 5 frames of 20×24: neither a
    # multiple of the 2×8×8 patches in time nor in space
    source = tmp_path / "cricket.mkv"
    write_signal(read_video(data_dir / "video" / "v_CricketShot_g04_c01_rgb.gif", max_frames=5, size=(20, 24)), source)
    vci, out = tmp_path / "cricket.vci", tmp_path / "out.mkv"
    report = compress_file(source, model, "1", vci)
    decompress_file(vci, model, out)
    original, decoded = check_round_trip(report, source, out)
    assert report.grid_shape == (5, 20, 24) and report.patches == 3 * 3 * 3
    assert original.features.shape == (5, 20, 24, 3)
    assert report.bpp == 8 * vci.stat().st_size / (5 * 20 * 24)
    assert original.meta["fps"] == pytest.approx(25.0) and decoded.meta["fps"] == original.meta["fps"]


# --- the sphere: an ERA5 temperature field, fitted whole ------------------------------------


@pytest.fixture(scope="module")
def sphere_model(tiny_model_factory, tiny_config, data_dir, tmp_path_factory):
    config = tiny_config("sphere", data_dir / "era5" / "samples.npz", steps=30, batch_size=4)
    out = tmp_path_factory.mktemp("sphere") / "model"
    shutil.copytree(tiny_model_factory("era5", config), out)
    fit_codecs(out, settings=QUICK_FIT, progress=False)
    return out


def test_sphere_round_trip(sphere_model, data_dir, tmp_path):
    source = data_dir / "era5" / "samples.npz"
    vci, out = tmp_path / "t.vci", tmp_path / "t.npz"
    report = compress_file(source, sphere_model, "1", vci)
    decompress_file(vci, sphere_model, out)
    original, decoded = check_round_trip(report, source, out)
    assert report.grid_shape == (46, 90) and report.patches == 1
    with np.load(out) as written, np.load(source) as src:
        assert np.array_equal(written["latitude"], src["latitude"]) and np.array_equal(written["longitude"], src["longitude"])
        assert float(written["t_min"]) == float(src["t_min"])
    assert decoded.meta["latitude"] == original.meta["latitude"]
    assert report.overhead_bytes < 150  # lat/lon travel as folded progressions, not 136 numbers


# --- voxels: an occupancy grid, scored by accuracy ------------------------------------------


def test_voxel_round_trip(tiny_model_factory, tiny_config, data_dir, tmp_path):
    from vcinr.modalities.voxels import voxelize_mesh

    mesh = data_dir / "voxels" / "stanford_bunny" / "bun_zipper_res4.ply"
    config = tiny_config("voxels", mesh, steps=20, batch_size=4, options={"resolution": 8, "scale_augment": 6})
    model = tmp_path / "model"
    shutil.copytree(tiny_model_factory("voxels", config), model)
    fit_codecs(model, settings=QUICK_FIT, progress=False)
    grid = tmp_path / "bunny.npy"
    np.save(grid, voxelize_mesh(mesh, 8).astype(np.uint8))
    vci, out = tmp_path / "bunny.vci", tmp_path / "out.npy"
    report = compress_file(grid, model, "1", vci)
    decompress_file(vci, model, out)
    assert report.metric == "accuracy" and 0.5 < report.value <= 1.0
    original = read_signal(grid, "voxels")
    decoded = read_signal(out, "voxels")
    assert decoded.features.shape == original.features.shape == (8, 8, 8, 1)
    assert signal_quality(original, decoded, "bce") == ("accuracy", report.value)
    assert np.load(out).dtype == np.uint8 and set(np.unique(np.load(out))) <= {0, 1}
    assert report.bpp == 8 * vci.stat().st_size / 512
