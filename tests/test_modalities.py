"""Every modality reads real files, writes them back exactly (or as documented), and fails cleanly."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from vcinr.errors import ConfigError, InputError
from vcinr.modalities import MODALITIES, get_modality, modality_for_path, read_signal, write_signal
from vcinr.modalities.audio import read_audio
from vcinr.modalities.sphere import read_sphere
from vcinr.modalities.video import center_crop_resize, read_video
from vcinr.modalities.voxels import read_ply, read_voxels, rescale_occupancy, voxelize_mesh
from vcinr.signal import Signal

DATA = Path(__file__).parents[1].parent / "shared" / "data"
FLAC = "librispeech/test-other/367/367-130732-0000.flac"


def data_file(relative: str) -> Path:
    path = DATA / relative
    assert path.is_file(), f"test data missing: {path}"
    return path


def assert_coords(signal: Signal, low: float, high: float) -> None:
    assert signal.coords.dtype == torch.float32 and signal.features.dtype == torch.float32
    assert signal.coords.shape == (*signal.grid_shape, len(signal.grid_shape))
    assert signal.coords.min().item() == pytest.approx(low)
    assert signal.coords.max().item() == pytest.approx(high)


# --- registry ------------------------------------------------------------------------------


def test_registry_is_consistent() -> None:
    assert set(MODALITIES) == {"image", "audio", "video", "sphere", "voxels", "array", "scene"}
    for name, modality in MODALITIES.items():
        assert modality.name == name and get_modality(name) is modality
        assert all(s == s.lower() and s.startswith(".") for s in modality.suffixes)
        assert set(modality.write_suffixes) <= set(modality.suffixes)
    assert MODALITIES["voxels"].loss == "bce" and MODALITIES["sphere"].coord_range is None


@pytest.mark.parametrize(
    ("name", "modality"),
    [
        ("a.PNG", "image"),
        ("a.flac", "audio"),
        ("a.gif", "video"),
        ("a.npz", "sphere"),
        ("a.npy", "array"),
        ("a.binvox", "voxels"),
    ],
)
def test_modality_for_path(name: str, modality: str) -> None:
    assert modality_for_path(name).name == modality


def test_unknown_modality_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown modality 'text'"):
        get_modality("text")


# --- image ---------------------------------------------------------------------------------


def test_kodak_png_round_trip_is_bit_exact(tmp_path: Path) -> None:
    source = data_file("kodak/kodim01.png")
    signal = read_signal(source)
    assert signal.modality == "image" and signal.features.shape == (512, 768, 3)
    assert signal.meta == {"mode": "RGB", "source_mode": "RGB", "format": "PNG", "height": 512, "width": 768}
    assert_coords(signal, 0.0, 1.0)
    assert signal.coords[0, -1].tolist() == [0.0, 1.0]  # axes (H, W)
    pixels = np.asarray(Image.open(source))
    assert torch.equal(signal.features, torch.from_numpy(pixels.astype(np.float32) / 255))
    write_signal(signal, tmp_path / "out.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), pixels)
    assert torch.equal(read_signal(tmp_path / "out.png").features, signal.features)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".pgm"])
def test_grayscale_round_trip(tmp_path: Path, suffix: str) -> None:
    gray = Image.open(data_file("kodak/kodim03.png")).convert("L")
    gray.save(tmp_path / f"gray{suffix}")
    signal = read_signal(tmp_path / f"gray{suffix}")
    assert signal.features.shape == (512, 768, 1) and signal.meta["mode"] == "L"
    write_signal(signal, tmp_path / f"again{suffix}")
    assert np.array_equal(np.asarray(Image.open(tmp_path / f"again{suffix}")), np.asarray(gray))


def test_palette_and_alpha_images_become_rgb(tmp_path: Path) -> None:
    rgb = Image.open(data_file("kodak/kodim02.png")).resize((64, 48))
    rgb.convert("P").save(tmp_path / "palette.png")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(7)
    rgba.save(tmp_path / "alpha.png")
    palette = read_signal(tmp_path / "palette.png")
    assert palette.features.shape == (48, 64, 3) and palette.meta["source_mode"] == "P"
    alpha = read_signal(tmp_path / "alpha.png")
    assert alpha.meta["source_mode"] == "RGBA"
    assert torch.equal(alpha.features, torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255))


def test_jpeg_is_read(tmp_path: Path) -> None:
    Image.open(data_file("kodak/kodim05.png")).save(tmp_path / "a.jpg", quality=90)
    signal = read_signal(tmp_path / "a.jpg")
    assert signal.meta["format"] == "JPEG" and signal.features.shape == (512, 768, 3)


def test_sixteen_bit_image_is_refused(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(InputError, match="not supported"):
        read_signal(tmp_path / "deep.png")


# --- audio ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".flac", ".wav"])
def test_librispeech_round_trip_is_bit_exact(tmp_path: Path, suffix: str) -> None:
    source = data_file(FLAC)
    signal = read_signal(source)
    assert signal.modality == "audio" and signal.features.shape == (37840, 1)
    assert signal.meta == {"sample_rate": 16000, "channels": 1, "subtype": "PCM_16", "format": "FLAC"}
    assert_coords(signal, -5.0, 5.0)
    assert 0.0 <= signal.features.min() and signal.features.max() <= 1.0
    samples, _ = sf.read(source, dtype="int16")
    assert torch.allclose(signal.features[:, 0].double(), torch.from_numpy((samples + 32768.0) / 65535.0), atol=1e-7)
    write_signal(signal, tmp_path / f"out{suffix}")
    written, rate = sf.read(tmp_path / f"out{suffix}", dtype="int16")
    assert rate == 16000 and np.array_equal(written, samples)


def test_stereo_wav_round_trip_is_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    samples = rng.integers(-32768, 32768, size=(4410, 2)).astype(np.int16)
    samples[0] = [-32768, 32767]
    sf.write(tmp_path / "stereo.wav", samples, 44100, subtype="PCM_16")
    signal = read_signal(tmp_path / "stereo.wav")
    assert signal.features.shape == (4410, 2) and signal.meta["channels"] == 2
    assert signal.features[0].tolist() == [0.0, 1.0]  # full scale maps onto [0, 1]
    write_signal(signal, tmp_path / "again.wav")
    written, rate = sf.read(tmp_path / "again.wav", dtype="int16")
    assert rate == 44100 and np.array_equal(written, samples)


def test_24_bit_and_float_audio(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pcm24 = rng.integers(-(2**23), 2**23, size=(1000, 1)).astype(np.int32)
    sf.write(tmp_path / "deep.flac", pcm24 << 8, 48000, subtype="PCM_24")
    write_signal(read_signal(tmp_path / "deep.flac"), tmp_path / "deep2.flac")
    assert np.array_equal(sf.read(tmp_path / "deep2.flac", dtype="int32", always_2d=True)[0] >> 8, pcm24)
    floats = rng.uniform(-1, 1, size=(1000, 3)).astype(np.float32)
    sf.write(tmp_path / "float.wav", floats, 8000, subtype="FLOAT")
    signal = read_signal(tmp_path / "float.wav")
    assert torch.allclose(signal.features, torch.from_numpy((floats + 1) / 2))
    write_signal(signal, tmp_path / "float2.wav")
    assert sf.info(tmp_path / "float2.wav").subtype == "FLOAT"
    assert np.allclose(sf.read(tmp_path / "float2.wav", dtype="float32")[0], floats, atol=1e-6)


def test_read_audio_takes_the_first_seconds() -> None:
    clip = read_audio(data_file(FLAC), max_seconds=1.5)
    assert clip.features.shape == (24000, 1)
    assert torch.equal(clip.features, read_signal(data_file(FLAC)).features[:24000])


def test_audio_write_needs_a_sample_rate(tmp_path: Path) -> None:
    signal = Signal(torch.rand(10, 1), torch.zeros(10, 1), "audio", {})
    with pytest.raises(InputError, match="sample_rate"):
        write_signal(signal, tmp_path / "a.wav")
    assert not list(tmp_path.iterdir())


# --- video ---------------------------------------------------------------------------------


def test_mp4_read() -> None:
    signal = read_signal(data_file("video/realshort.mp4"))
    assert signal.modality == "video" and signal.features.shape == (36, 240, 320, 3)
    assert signal.meta["codec"] == "h264" and signal.meta["fps"] == pytest.approx(45000 / 1499)
    assert (signal.meta["width"], signal.meta["height"]) == (320, 240)
    assert_coords(signal, 0.0, 1.0)


@pytest.mark.parametrize("suffix", [".mkv", ".avi"])
def test_lossless_video_round_trip_is_bit_exact(tmp_path: Path, suffix: str) -> None:
    clip = read_video(data_file("video/mmaction2_test.avi"), max_frames=6)
    assert clip.features.shape == (6, 240, 320, 3)
    write_signal(clip, tmp_path / f"clip{suffix}")
    again = read_signal(tmp_path / f"clip{suffix}")
    assert again.meta["codec"] == "ffv1" and again.meta["fps"] == pytest.approx(25.0)
    assert torch.equal(again.features, clip.features)


def test_mp4_round_trip_is_close(tmp_path: Path) -> None:
    clip = read_video(data_file("video/realshort.mp4"), max_frames=10)
    write_signal(clip, tmp_path / "clip.mp4")
    again = read_signal(tmp_path / "clip.mp4")
    assert again.features.shape == clip.features.shape and again.meta["codec"] == "h264"
    psnr = -10 * math.log10(torch.mean((again.features - clip.features) ** 2).item())
    assert psnr > 30


def test_mp4_with_odd_frame_size(tmp_path: Path) -> None:
    clip = read_video(data_file("video/realshort.mp4"), max_frames=3, size=(17, 23))
    write_signal(clip, tmp_path / "odd.mp4")
    assert read_signal(tmp_path / "odd.mp4").features.shape == (3, 17, 23, 3)


def test_gif_and_resizing() -> None:
    clip = read_video(data_file("video/v_CricketShot_g04_c01_rgb.gif"), max_frames=8, size=(32, 32))
    assert clip.features.shape == (8, 32, 32, 3) and clip.meta["codec"] == "gif"
    assert (clip.meta["width"], clip.meta["height"]) == (224, 224)


def test_center_crop_resize_keeps_the_middle() -> None:
    frame = np.zeros((240, 320, 3), dtype=np.uint8)
    frame[:, 40:280] = 200  # the centred 240x240 square
    assert np.all(center_crop_resize(frame, (240, 240)) == 200)
    assert center_crop_resize(frame, (32, 32)).shape == (32, 32, 3)
    assert center_crop_resize(frame, (24, 8)).shape == (24, 8, 3)


# --- sphere --------------------------------------------------------------------------------


def test_era5_round_trip(tmp_path: Path) -> None:
    source = data_file("era5/samples.npz")
    arrays = dict(np.load(source))
    signal = read_signal(source)
    assert signal.modality == "sphere" and signal.features.shape == (46, 90, 1)
    assert torch.equal(signal.features[..., 0], torch.from_numpy(arrays["temperature_normalized"][0]))
    assert signal.meta["min"] == pytest.approx(202.66) and signal.meta["max"] == pytest.approx(320.93)
    assert signal.meta["num_fields"] == 5 and signal.meta["source_index"] == 0
    # unit-sphere coordinates; latitude runs 90 → -90 in this file
    assert torch.allclose(signal.coords.norm(dim=-1), torch.ones(46, 90))
    assert torch.allclose(signal.coords[0, 7], torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)
    assert torch.allclose(signal.coords[45, 0], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)
    lat, lon = np.deg2rad(arrays["latitude"][10]), np.deg2rad(arrays["longitude"][20])
    expected = [np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)]
    assert torch.allclose(signal.coords[10, 20], torch.tensor(expected, dtype=torch.float32), atol=1e-6)

    write_signal(signal, tmp_path / "field.npz")
    written = dict(np.load(tmp_path / "field.npz"))
    assert set(written) == set(arrays)
    assert np.array_equal(written["temperature_normalized"], arrays["temperature_normalized"][:1])
    assert np.allclose(written["temperature_kelvin"], arrays["temperature_kelvin"][:1], atol=1e-3)
    again = read_signal(tmp_path / "field.npz")
    assert torch.equal(again.features, signal.features) and torch.equal(again.coords, signal.coords)


def test_sphere_field_index() -> None:
    source = data_file("era5/samples.npz")
    field = read_sphere(source, index=3)
    assert torch.equal(field.features[..., 0], torch.from_numpy(np.load(source)["temperature_normalized"][3]))
    assert field.meta["field_index"] == 3 and field.meta["source_index"] == 900
    with pytest.raises(InputError, match="out of range"):
        read_sphere(source, index=5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16])
def test_simple_sphere_layout_round_trip(tmp_path: Path, dtype: type) -> None:
    data = (np.random.default_rng(2).normal(280, 20, size=(6, 12)) * (100 if dtype is np.int16 else 1)).astype(dtype)
    np.savez(tmp_path / "grid.npz", data=data)
    signal = read_signal(tmp_path / "grid.npz")
    assert signal.features.min() == 0 and signal.features.max() == 1
    # default grid: latitudes equally spaced in [-π/2, π/2], longitudes in [0, 2π(n-1)/n]
    lat = np.linspace(-np.pi / 2, np.pi / 2, 6)[:, None]
    lon = (np.arange(12) * 2 * np.pi / 12)[None, :]
    expected = np.stack(np.broadcast_arrays(np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)), -1)
    assert np.allclose(signal.coords.numpy(), expected, atol=1e-6)
    write_signal(signal, tmp_path / "again.npz")
    again = np.load(tmp_path / "again.npz")["data"]
    assert again.dtype == data.dtype and again.shape == data.shape
    if dtype is np.int16:
        assert np.array_equal(again, data)
    else:
        assert np.allclose(again, data, rtol=1e-6)


def test_netcdf_needs_xarray(tmp_path: Path) -> None:
    path = tmp_path / "field.nc"
    if importlib.util.find_spec("xarray") is None:
        path.write_bytes(b"CDF\x01")
        with pytest.raises(InputError, match="xarray"):
            read_signal(path)
    else:  # pragma: no cover - only where xarray is installed
        import xarray

        values = np.random.default_rng(3).random((5, 8))
        xarray.Dataset(
            {"t2m": (("latitude", "longitude"), values)},
            coords={"latitude": np.linspace(90, -90, 5), "longitude": np.arange(8) * 45.0},
        ).to_netcdf(path)
        assert read_signal(path).features.shape == (5, 8, 1)


def test_sphere_npz_without_known_layout(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no 'temperature_normalized' or 'data'"):
        read_signal(data_file("voxels/ct_stent/stent.npz"))


# --- voxels --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stent() -> Signal:
    return read_voxels(data_file("voxels/ct_stent/stent.npz"), threshold=1000)


def test_ct_stent_threshold(stent: Signal) -> None:
    volume = np.load(data_file("voxels/ct_stent/stent.npz"))["arr_0"]
    assert stent.modality == "voxels" and stent.features.shape == (256, 128, 128, 1)
    assert np.array_equal(stent.features[..., 0].numpy(), (volume > 1000).astype(np.float32))
    assert 0 < stent.features.mean() < 0.05
    assert_coords(stent, 0.0, 1.0)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".binvox"])
def test_voxel_round_trip(tmp_path: Path, stent: Signal, suffix: str) -> None:
    write_signal(stent, tmp_path / f"stent{suffix}")
    again = read_signal(tmp_path / f"stent{suffix}", "voxels")
    assert torch.equal(again.features, stent.features)


def test_scalar_volume_needs_a_threshold() -> None:
    with pytest.raises(InputError, match="threshold"):
        read_signal(data_file("voxels/ct_stent/stent.npz"), "voxels")


def test_binvox_axis_order_and_long_runs(tmp_path: Path) -> None:
    # binvox stores x outermost, then z, then y: index = x * (dz * dy) + z * dy + y
    header = b"#binvox 1\ndim 2 2 2\ntranslate 0.5 0 0\nscale 2\ndata\n"
    (tmp_path / "tiny.binvox").write_bytes(header + bytes([0, 3, 1, 1, 0, 4]))  # only index 3 set
    tiny = read_signal(tmp_path / "tiny.binvox")
    assert torch.nonzero(tiny.features[..., 0]).tolist() == [[0, 1, 1]]  # x=0, z=1, y=1
    assert tiny.meta["translate"] == [0.5, 0.0, 0.0] and tiny.meta["scale"] == 2.0
    write_signal(tiny, tmp_path / "tiny2.binvox")
    assert (tmp_path / "tiny2.binvox").read_bytes().endswith(bytes([0, 3, 1, 1, 0, 4]))

    grid = np.zeros((3, 5, 700), dtype=bool)  # non-cubic, runs longer than 255
    grid[1, 2, 10:650] = True
    grid[2, :, ::7] = True
    signal = Signal(torch.from_numpy(grid.astype(np.float32)[..., None]), torch.zeros(3, 5, 700, 3), "voxels")
    write_signal(signal, tmp_path / "long.binvox")
    assert torch.equal(read_signal(tmp_path / "long.binvox").features, signal.features)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"#binvox 1\ndim 2 2 2\ndata\n" + bytes([1, 7]), "header says"),
        (b"#binvox 1\ndim 2 2 2\ndata\n" + bytes([1, 7, 0]), "truncated"),
        (b"#binvox 1\ndim 2 2\n", "no 'data' line"),
        (b"P6\n2 2\n255\n", "#binvox"),
    ],
)
def test_corrupt_binvox(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "bad.binvox").write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_signal(tmp_path / "bad.binvox")


def _winding_number_occupancy(path: Path, n: int) -> np.ndarray:
    """Reference inside test: generalized winding number > 1/2 at voxel centres (slow, exact)."""
    vertices, faces = read_ply(path)
    low, high = vertices.min(0), vertices.max(0)
    vertices = (vertices - (low + high) / 2) * (n / (high - low).max()) + n / 2
    centres = np.stack(np.meshgrid(*[np.arange(n) + 0.5] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    a, b, c = (vertices[faces[:, k]][None] - centres for k in range(3))
    la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
    det = np.einsum("ijk,ijk->ij", a, np.cross(b, c))
    den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
    return (np.abs(2 * np.arctan2(det, den).sum(1) / (4 * np.pi)) > 0.5).reshape(n, n, n)


def test_voxelize_bunny_matches_winding_numbers() -> None:
    mesh = data_file("voxels/stanford_bunny/bun_zipper_res4.ply")
    vertices, faces = read_ply(mesh)
    assert vertices.shape == (453, 3) and faces.shape == (948, 3)
    occupancy = voxelize_mesh(mesh, 12)
    assert occupancy.shape == (12, 12, 12) and occupancy.dtype == bool
    assert (occupancy == _winding_number_occupancy(mesh, 12)).mean() > 0.99


def test_voxelize_bunny_at_32() -> None:
    coarse = voxelize_mesh(data_file("voxels/stanford_bunny/bun_zipper_res3.ply"), 32)
    fine = voxelize_mesh(data_file("voxels/stanford_bunny/bun_zipper_res2.ply"), 32)
    assert 0.1 < fine.mean() < 0.35
    assert (coarse & fine).sum() / (coarse | fine).sum() > 0.9  # mesh detail barely matters
    assert fine[16, 16, 16] and not fine[0, 0, 0] and not fine[-1, -1, -1]


def test_rescale_occupancy() -> None:
    cube = np.zeros((16, 16, 16), dtype=bool)
    cube[4:12, 4:12, 4:12] = True
    assert np.array_equal(rescale_occupancy(cube, (1.0, 1.0, 1.0)), cube)
    squashed = rescale_occupancy(cube, (0.5, 1.0, 1.25))
    assert squashed.shape == cube.shape
    extent = [np.ptp(np.nonzero(squashed)[axis]) + 1 for axis in range(3)]
    assert extent == [4, 8, 10]
    assert rescale_occupancy(cube, (0.5, 0.5, 0.5), (8, 8, 8)).sum() == 4**3


# --- array ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        np.arange(-300, 300, dtype=np.int16).reshape(6, 10, 10),
        np.array([0, 65535, 12345, 1], dtype=np.uint16),
        np.random.default_rng(4).integers(0, 256, size=(7, 9)).astype(np.uint8),
        np.random.default_rng(5).normal(size=(4, 5, 6, 2)).astype(np.float32),
        np.random.default_rng(6).normal(scale=1e3, size=(50,)),
        np.array([[True, False], [False, False]]),
        np.full((3, 3), 7, dtype=np.int32),
    ],
    ids=["int16-3d", "uint16-full-range", "uint8", "float32-4d", "float64", "bool", "constant"],
)
def test_array_round_trip(tmp_path: Path, values: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", values)
    signal = read_signal(tmp_path / "a.npy")
    assert signal.modality == "array" and signal.features.shape == (*values.shape, 1)
    assert 0.0 <= signal.features.min() and signal.features.max() <= 1.0
    assert_coords(signal, 0.0, 0.0 if max(values.shape) == 1 else 1.0)
    write_signal(signal, tmp_path / "b.npy")
    again = np.load(tmp_path / "b.npy")
    assert again.dtype == values.dtype and again.shape == values.shape
    if np.issubdtype(values.dtype, np.floating):
        assert np.allclose(again, values, rtol=1e-6, atol=1e-6 * np.ptp(values))
    else:
        assert np.array_equal(again, values)


# --- bad input -----------------------------------------------------------------------------


def _truncated_flac(tmp_path: Path) -> Path:
    raw = data_file(FLAC).read_bytes()
    (tmp_path / "cut.flac").write_bytes(raw[: len(raw) // 2])
    return tmp_path / "cut.flac"


def _random_bytes(name: str) -> callable:
    def make(tmp_path: Path) -> Path:
        (tmp_path / name).write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return tmp_path / name

    return make


def _npy(name: str, values: np.ndarray) -> callable:
    def make(tmp_path: Path) -> Path:
        np.save(tmp_path / name, values)
        return tmp_path / name

    return make


@pytest.mark.parametrize(
    ("make", "modality", "message"),
    [
        (lambda tmp: tmp / "missing.png", None, "no such file"),
        (lambda tmp: tmp, None, "unknown format"),
        (_random_bytes("data.xyz"), None, "unknown format"),
        (_random_bytes("noise.png"), None, "not a readable image"),
        (_random_bytes("noise.mp4"), None, "not a readable video"),
        (_random_bytes("noise.wav"), None, "not a readable audio"),
        (_random_bytes("noise.npz"), None, "not a readable sphere"),
        (_random_bytes("noise.npy"), "voxels", "not a readable voxel"),
        (_truncated_flac, None, "not a readable audio"),
        (_npy("nan.npy", np.array([1.0, np.nan])), None, "NaN"),
        (_npy("inf.npy", np.array([[1.0], [np.inf]])), None, "NaN or infinite"),
        (_npy("complex.npy", np.ones(3, dtype=complex)), None, "not a real numeric"),
        (_npy("object.npy", np.array([{}, 1], dtype=object)), None, "not a readable array"),
        (_npy("scalar.npy", np.array(3.0)), None, "at least one axis"),
        (lambda tmp: data_file(FLAC), "image", "not image data"),
        (lambda tmp: data_file("kodak/kodim01.png"), "video", "not video data"),
        (lambda tmp: data_file("era5/samples.npz"), "audio", "not audio data"),
    ],
)
def test_bad_input_is_one_line_input_error(tmp_path: Path, make: callable, modality: str | None, message: str) -> None:
    with pytest.raises(InputError) as info:
        read_signal(make(tmp_path), modality)
    assert message.lower() in str(info.value).lower()
    assert "\n" not in str(info.value)


def test_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        read_signal(tmp_path / "folder.png")


def test_write_refuses_foreign_suffixes(tmp_path: Path) -> None:
    image = read_signal(data_file("kodak/kodim01.png"))
    for name in ("a.wav", "a.gif", "a"):
        with pytest.raises(InputError, match="cannot write image"):
            write_signal(image, tmp_path / name)
    video = Signal(torch.rand(2, 4, 4, 3), torch.zeros(2, 4, 4, 3), "video", {"fps": 10})
    with pytest.raises(InputError, match="cannot write video data as '.gif'"):
        write_signal(video, tmp_path / "a.gif")
    with pytest.raises(InputError, match="does not exist"):
        write_signal(image, tmp_path / "missing" / "a.png")
    assert not list(tmp_path.iterdir())


def test_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = read_signal(data_file("kodak/kodim01.png"))
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")

    def broken_save(self: Image.Image, fp: Path, *args: object, **kwargs: object) -> None:
        Path(fp).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(InputError, match="cannot write.*disk full"):
        write_signal(image, target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    assert target.read_bytes() == b"previous"


def test_writer_checks_feature_shape(tmp_path: Path) -> None:
    wrong = Signal(torch.rand(4, 4, 2), torch.zeros(4, 4, 2), "image")
    with pytest.raises(InputError, match="1 or 3"):
        write_signal(wrong, tmp_path / "a.png")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("where", [0, (1 << 20) - 1, 1 << 20, -1])
def test_a_single_non_finite_value_anywhere_is_refused(where):
    """Signal checks finiteness a chunk at a time (no whole-grid temporaries): every chunk is seen."""
    from vcinr.signal import Signal, grid_coordinates

    features = torch.zeros(3 * (1 << 20) + 7, 1)
    features.view(-1)[where] = float("nan")
    with pytest.raises(InputError, match="NaN or infinite"):
        Signal(features, grid_coordinates((features.shape[0],), 0.0, 1.0), "array")
    features.view(-1)[where] = 0.0
    Signal(features, grid_coordinates((features.shape[0],), 0.0, 1.0), "array")
