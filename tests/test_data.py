"""load_items turns every kind of real data into equally shaped items with the right coordinates."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from vcinr.data import DataConfig, ItemSet, load_items
from vcinr.errors import ConfigError, InputError
from vcinr.modalities import read_signal, write_signal
from vcinr.modalities.voxels import occupancy_signal, voxelize_mesh
from vcinr.patching import merge_patches, split_patches

DATA = Path(__file__).parents[1].parent / "shared" / "data"


def data_path(relative: str) -> Path:
    path = DATA / relative
    assert path.exists(), f"test data missing: {path}"
    return path


def load(split: str = "train", **section: object) -> ItemSet:
    return load_items(DataConfig(**section), split)


def assert_items(items: ItemSet, shape: tuple[int, ...], modality: str, coord_range: tuple[float, float]) -> None:
    assert items.modality == modality
    assert items.features.dtype == torch.float32 and items.coords.dtype == torch.float32
    assert tuple(items.features.shape) == shape
    assert items.coords.shape[:-1] == items.features.shape[1:-1]
    assert 0.0 <= items.features.min() and items.features.max() <= 1.0
    assert items.coords.min().item() == pytest.approx(coord_range[0])
    assert items.coords.max().item() == pytest.approx(coord_range[1])


# --- cifar10 -------------------------------------------------------------------------------


def test_cifar10_npz_layout() -> None:
    path = str(data_path("cifar10"))
    train = load("train", kind="cifar10", path=path, max_items=32)
    assert_items(train, (32, 32, 32, 3), "image", (0.0, 1.0))
    test = load("test", kind="cifar10", path=path)
    images = np.load(data_path("cifar10/test.npz"))["images"]
    assert torch.equal(test.features, torch.from_numpy(images.astype(np.float32) / 255))
    patched = load("test", kind="cifar10", path=path, patch=[16, 16], max_items=10)
    assert_items(patched, (8, 16, 16, 3), "image", (0.0, 1.0))  # a capped test split keeps whole images
    assert patched.files().tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    kept = [next(i for i in range(len(images)) if torch.equal(patched.features[4 * k],
                 torch.from_numpy(images[i, :16, :16].astype(np.float32) / 255))) for k in (0, 1)]
    for k, image in enumerate(kept):  # the four patches of each kept image, in order
        whole = torch.from_numpy(images[image].astype(np.float32) / 255)
        assert torch.equal(merge_patches(patched.features[4 * k : 4 * k + 4], (32, 32)), whole)


def test_cifar10_binary_layout(tmp_path: Path) -> None:
    images = np.load(data_path("cifar10/test.npz"))["images"][:30]
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    records = np.concatenate([np.zeros((30, 1), np.uint8), images.transpose(0, 3, 1, 2).reshape(30, -1)], axis=1)
    records[:10].tofile(folder / "data_batch_1.bin")
    records[10:20].tofile(folder / "data_batch_2.bin")
    records[20:].tofile(folder / "test_batch.bin")
    train = load("train", kind="cifar10", path=str(tmp_path))
    assert torch.equal(train.features, torch.from_numpy(images[:20].astype(np.float32) / 255))
    test = load("test", kind="cifar10", path=str(folder))
    assert torch.equal(test.features, torch.from_numpy(images[20:].astype(np.float32) / 255))
    patched = load("test", kind="cifar10", path=str(folder), patch=[16, 16])  # item-major order
    assert torch.equal(patched.features, torch.cat([split_patches(image, (16, 16)) for image in test.features]))
    (folder / "test_batch.bin").write_bytes(b"\0" * 100)
    with pytest.raises(InputError, match="multiple of 3073"):
        load("test", kind="cifar10", path=str(folder))


def test_max_items_is_deterministic() -> None:
    section = dict(kind="cifar10", path=str(data_path("cifar10")), max_items=16, seed=3)
    first, again = load(**section), load(**section)
    assert torch.equal(first.features, again.features)
    other = load(**{**section, "seed": 4})
    assert not torch.equal(first.features, other.features)


# --- images --------------------------------------------------------------------------------


def test_kodak_patches() -> None:
    path = str(data_path("kodak"))
    train = load("train", kind="images", path=path, patch=[32, 32], max_items=50)
    assert_items(train, (50, 32, 32, 3), "image", (0.0, 1.0))
    # kodim17–20 (portrait and landscape) are the test files: 4 × 384 patches
    test = load("test", kind="images", path=path, patch=[32, 32])
    assert test.features.shape == (4 * 384, 32, 32, 3)
    first = read_signal(data_path("kodak/kodim17.png")).features
    assert torch.equal(test.features[0], first[:32, :32]) and torch.equal(test.features[1], first[:32, 32:64])


def test_random_crops_for_training(tmp_path: Path) -> None:
    for name in ("kodim01.png", "kodim02.png", "kodim03.png"):
        (tmp_path / name).symlink_to(data_path(f"kodak/{name}"))
    section = dict(kind="images", path=str(tmp_path), patch=[24, 40], options={"random_crops_per_image": 5})
    train = load("train", **section)
    assert_items(train, (10, 24, 40, 3), "image", (0.0, 1.0))
    assert torch.equal(train.features, load("train", **section).features)
    assert load("test", **section).features.shape == (22 * 20, 24, 40, 3)  # kodim03 tiled


def test_mixed_grayscale_and_rgb_is_refused(tmp_path: Path) -> None:
    image = Image.open(data_path("kodak/kodim01.png")).resize((64, 64))
    image.save(tmp_path / "a.png")
    image.convert("L").save(tmp_path / "b.png")
    with pytest.raises(InputError, match="grayscale"):
        load("train", kind="images", path=str(tmp_path), patch=[32, 32], test_fraction=0.0)


def test_whole_images_of_different_shapes_need_patches() -> None:
    with pytest.raises(InputError, match="set data.patch"):
        load("test", kind="images", path=str(data_path("kodak")))


# --- audio ---------------------------------------------------------------------------------


def test_librispeech_patches() -> None:
    path = str(data_path("librispeech"))
    train = load("train", kind="audio", path=path, patch=[200], max_items=64)
    assert_items(train, (64, 200, 1), "audio", (-5.0, 5.0))
    whole = load("test", kind="audio", path=path, max_items=3, options={"clip_seconds": 1.0})
    assert_items(whole, (3, 16000, 1), "audio", (-5.0, 5.0))


def test_a_patch_range_keeps_the_spacing_of_longer_patches() -> None:
    """200 samples over a range 199/399 as wide as [-5, 5] are as far apart as 400 samples over [-5, 5]."""
    path, half = str(data_path("librispeech")), 5.0 * 199 / 399
    short = load("train", kind="audio", path=path, patch=[200], patch_range=[-half, half], max_items=4)
    assert_items(short, (4, 200, 1), "audio", (-half, half))
    long = load("train", kind="audio", path=path, patch=[400], max_items=4)
    assert torch.allclose(short.coords.diff(dim=0), long.coords.diff(dim=0)[:199], atol=1e-6)


def test_short_audio_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    for name, seconds in (("a.wav", 1.0), ("b.wav", 0.2), ("c.wav", 1.5), ("d.wav", 1.0)):
        sf.write(tmp_path / name, rng.integers(-1000, 1000, int(8000 * seconds)).astype(np.int16), 8000)
    with caplog.at_level(logging.WARNING, logger="vcinr.data"):
        train = load("train", kind="audio", path=str(tmp_path), test_fraction=0.25, options={"clip_seconds": 0.5})
    assert train.features.shape == (2, 4000, 1)
    assert "skipped 1 of 3 audio files shorter than clip_seconds=0.5" in caplog.text


def test_clips_per_file_cuts_consecutive_clips(tmp_path: Path) -> None:
    """Each file gives as many whole clips as it holds, up to ``clips_per_file``, in order."""
    ramp = np.arange(8000 * 2, dtype=np.int16)  # 2 s at 8 kHz: three whole 0.6-s clips, not four
    sf.write(tmp_path / "a.wav", ramp, 8000)
    options = {"clip_seconds": 0.6, "clips_per_file": 4}
    items = load("train", kind="audio", path=str(tmp_path), test_fraction=0, options=options)
    assert items.features.shape == (3, 4800, 1)
    one = load("train", kind="audio", path=str(tmp_path), test_fraction=0, options={"clip_seconds": 0.6})
    assert torch.equal(items.features[0], one.features[0])
    step = float(items.features[0, 1, 0] - items.features[0, 0, 0])  # one code of the 16-bit ramp
    assert items.features[1, 0, 0] == pytest.approx(float(items.features[0, -1, 0]) + step)
    assert torch.equal(items.coords, one.coords)


# --- sphere --------------------------------------------------------------------------------


def test_era5_fields() -> None:
    path = str(data_path("era5/samples.npz"))
    fields = np.load(path)["temperature_normalized"]
    train = load("train", kind="sphere", path=path)
    assert_items(train, (4, 46, 90, 1), "sphere", (-1.0, 1.0))
    assert torch.equal(train.features[..., 0], torch.from_numpy(fields[:4]))
    assert torch.allclose(train.coords.norm(dim=-1), torch.ones(46, 90))
    test = load("test", kind="sphere", path=path)
    assert torch.equal(test.features[..., 0], torch.from_numpy(fields[4:]))
    with pytest.raises(ConfigError, match="cannot be patched"):
        load("train", kind="sphere", path=path, patch=[8, 8])


# --- video ---------------------------------------------------------------------------------


def test_video_clips(tmp_path: Path) -> None:
    for name in ("realshort.mp4", "mmaction2_test.avi", "v_CricketShot_g04_c01_rgb.gif"):
        (tmp_path / name).symlink_to(data_path(f"video/{name}"))
    options = {"frames": 4, "size": 16, "clips_per_video": 2}
    train = load("train", kind="video", path=str(tmp_path), options=options)
    assert_items(train, (4, 4, 16, 16, 3), "video", (0.0, 1.0))
    patched = load("test", kind="video", path=str(tmp_path), patch=[2, 8, 8], options=options)
    assert_items(patched, (2 * 2 * 2 * 2, 2, 8, 8, 3), "video", (0.0, 1.0))
    wide = load("test", kind="video", path=str(tmp_path), options={"frames": 3, "size": [8, 12]})
    assert wide.features.shape == (1, 3, 8, 12, 3)


# --- voxels --------------------------------------------------------------------------------


def test_bunny_with_scale_augmentation() -> None:
    mesh = data_path("voxels/stanford_bunny/bun_zipper_res4.ply")
    section = dict(kind="voxels", path=str(mesh), options={"scale_augment": 4, "resolution": 24})
    train = load("train", **section)
    assert_items(train, (4, 24, 24, 24, 1), "voxels", (0.0, 1.0))
    assert torch.equal(train.features[0, ..., 0], torch.from_numpy(voxelize_mesh(mesh, 24).astype(np.float32)))
    assert set(train.features.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(train.features[1], train.features[2])
    assert load("test", **section).features.shape == (1, 24, 24, 24, 1)
    with pytest.raises(InputError, match="split is empty"):
        load("train", kind="voxels", path=str(mesh))


def test_ct_stent_patches() -> None:
    section = dict(
        kind="voxels", path=str(data_path("voxels/ct_stent/stent.npz")), patch=[32, 32, 32], max_items=6,
        options={"threshold": 1000, "scale_augment": 1}, test_fraction=0.5,
    )
    assert_items(load("train", **section), (6, 32, 32, 32, 1), "voxels", (0.0, 1.0))
    with pytest.raises(InputError, match="threshold"):
        load("train", **{**section, "options": {"scale_augment": 1}})


def test_voxel_directory_is_split_by_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(5):
        write_signal(occupancy_signal(rng.random((8, 8, 8)) > 0.5), tmp_path / f"shape{i}.binvox")
    section = dict(kind="voxels", path=str(tmp_path), options={"scale_augment": 1})
    assert load("train", **section).features.shape == (8, 8, 8, 8, 1)
    test = load("test", **section)
    assert test.features.shape == (2, 8, 8, 8, 1)
    assert torch.equal(test.features[0], read_signal(tmp_path / "shape4.binvox").features)


# --- array ---------------------------------------------------------------------------------


def test_array_directory_and_single_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    stack = rng.normal(size=(10, 6, 7)).astype(np.float32)
    for i, values in enumerate(stack[:5]):
        np.save(tmp_path / f"item{i}.npy", values)
    train = load("train", kind="array", path=str(tmp_path))
    assert_items(train, (4, 6, 7, 1), "array", (0.0, 1.0))
    assert torch.equal(train.features[0], read_signal(tmp_path / "item0.npy").features)
    single = tmp_path / "single"
    single.mkdir()
    np.save(single / "stack.npy", stack)
    rows = load("test", kind="array", path=str(single / "stack.npy"), patch=[3, 7])
    assert_items(rows, (2 * 2, 3, 7, 1), "array", (0.0, 1.0))
    row = stack[8].astype(np.float64)  # rows 8 and 9 are the test items, each normalised alone
    expected = ((row - row.min()) / (row.max() - row.min())).astype(np.float32)
    assert torch.equal(rows.features[:2].reshape(6, 7), torch.from_numpy(expected))
    np.save(single / "flat.npy", stack[0, 0])
    with pytest.raises(InputError, match="leading item axis"):
        load("train", kind="array", path=str(single / "flat.npy"))


# --- configuration and errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (dict(kind="text", path="x"), "data.kind must be one of"),
        (dict(kind="audio", path="x", options={"clip": 1}), "unknown data.options clip for kind audio"),
        (dict(kind="audio", path="x", options={"clip_seconds": -1}), "clip_seconds must be a positive"),
        (dict(kind="audio", path="x", options={"clips_per_file": 0}), "clips_per_file"),
        (dict(kind="video", path="x", options={"size": [1, 2, 3]}), "size must be an integer or"),
        (dict(kind="voxels", path="x", options={"scale_augment": 1.5}), "scale_augment must be an integer"),
        (dict(kind="images", path="x", patch=[32, 0]), "data.patch\\[1\\] must be an integer >= 1"),
        (dict(kind="images", path="x", max_items=0), "max_items must be an integer >= 1"),
        (dict(kind="images", path="x", test_fraction=1.5), "test_fraction must be in"),
        (dict(kind="images", path="x", options={"random_crops_per_image": 4}), "needs data.patch"),
        (dict(kind="audio", path="x", patch_range=[-1, 1]), "patch_range needs data.patch"),
        (dict(kind="audio", path="x", patch=[200], patch_range=[1, -1]), "with low < high"),
        (dict(kind="audio", path="x", patch=[200], patch_range=[0, float("inf")]), "within ±1e\\+06"),
        (dict(kind="audio", path="x", patch=[200], patch_range=[0, 2e6]), "within ±1e\\+06"),
        (dict(kind="audio", path="x", patch=[200], patch_range=[0, 1, 2]), "with low < high"),
        # counts and per-item sizes the loader would allocate before reading a file (issue 14)
        (dict(kind="voxels", path="x", options={"scale_augment": 10**12}), "scale_augment must be at most"),
        (dict(kind="voxels", path="x", options={"resolution": 1000}), "resolution must give at most"),
        (dict(kind="video", path="x", options={"size": [100000, 100000]}), "size must give at most"),
        (dict(kind="scenes", path="x", options={"size": 100000}), "size must give at most"),
        (dict(kind="images", path="x", patch=[32, 32], options={"random_crops_per_image": 10**6}),
         "are more than 33554432 points per image"),
    ],
)
def test_config_validation(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        DataConfig(**section)
    assert "\n" not in str(info.value)


def test_options_get_their_defaults() -> None:
    assert DataConfig(kind="audio", path="x").options == {"clip_seconds": 3.0, "clips_per_file": 1}
    video = DataConfig(kind="video", path="x", options={"frames": 2})
    assert video.options == {"frames": 2, "size": 32, "clips_per_video": 1}


def test_missing_and_empty_sources(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load("train", kind="images", path=str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="no image files"):
        load("train", kind="images", path=str(tmp_path))
    with pytest.raises(InputError, match="no CIFAR-10 train data"):
        load("train", kind="cifar10", path=str(tmp_path))
    with pytest.raises(InputError, match="test split is empty"):
        load("test", kind="sphere", path=str(data_path("era5/samples.npz")), test_fraction=0.0)
    with pytest.raises(ConfigError, match="split must be"):
        load("valid", kind="sphere", path=str(data_path("era5/samples.npz")))
