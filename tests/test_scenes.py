"""Scenes: SRN folders, the bunny generator, volume rendering in the meta-learner, and the codec.

The scene data are rendered from the real Stanford bunny mesh in ``../shared/data`` at a
tiny size (a few views of 16 x 16), so every test runs in seconds on one core.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_tiny_config
from vcinr.codec.fit import FitSettings, fit_codecs
from vcinr.data import load_items
from vcinr.errors import InputError
from vcinr.inr.conditioning import build_conditioning
from vcinr.inr.render import VolumeRenderer
from vcinr.inr.siren import Siren
from vcinr.meta.metasgd import MetaINR
from vcinr.meta.model import load_model
from vcinr.meta.training import evaluate
from vcinr.modalities import read_signal, write_signal
from vcinr.modalities.common import to_uint8
from vcinr.modalities.scene import camera_rays, read_scene
from vcinr.pipeline import compress_file, decode_latents, decompress_file
from vcinr.scenes.bunny import DEFAULT_MESH, SceneSettings, camera_on_sphere, make_scenes
from vcinr.scenes.raster import rasterise
from vcinr.training import train

SETTINGS = SceneSettings(scenes=4, test_scenes=1, views=6, size=16, supersample=1, seed=3)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    if not DEFAULT_MESH.is_file():
        pytest.skip("the Stanford bunny mesh of ../shared/data is missing")
    out = tmp_path_factory.mktemp("scenes") / "bunny"
    make_scenes(out, SETTINGS, progress=False)
    return out


def scene_config(path: Path, steps: int = 4):
    config = make_tiny_config("scenes", path, steps=steps, batch_size=2, max_items=8,
                              options={"query_views": 2, "rays_per_item": 32, "samples": 8})
    config.train.eval_items = 1
    return config


def test_generated_scenes_round_trip_through_the_srn_layout(scenes: Path, tmp_path: Path) -> None:
    folders = sorted(p.name for p in (scenes / "train").iterdir()), sorted(p.name for p in (scenes / "test").iterdir())
    assert folders == (["scene_0000", "scene_0001", "scene_0002"], ["scene_0003"])
    scene = read_signal(scenes / "test" / "scene_0003", "scene")
    assert scene.features.shape == (6, 16, 16, 3) and scene.coords.shape == (6, 16, 16, 6)
    background = (scene.features == 1).all(-1).float().mean()
    assert 0.3 < background < 0.95  # the bunny is in view, and so is the white background
    write_signal(scene, tmp_path / "copy")
    again = read_scene(tmp_path / "copy")
    assert torch.equal(again.features, scene.features) and torch.equal(again.coords, scene.coords)
    with pytest.raises(InputError, match="already exists"):
        write_signal(scene, tmp_path / "copy")


def test_rays_pass_through_the_pixel_centres_and_the_look_at_point() -> None:
    pose = camera_on_sphere(0.3, 0.2)
    rays = camera_rays(pose[None], focal=20.0, cx=8.0, cy=8.0, height=16, width=16)[0].double()
    assert torch.allclose(rays[..., 3:].norm(dim=-1), torch.ones(16, 16, dtype=torch.float64), atol=1e-6)
    # the four central pixels surround the optical axis, which points at the origin
    centre = rays[7:9, 7:9, 3:].mean(dim=(0, 1))
    to_origin = -torch.from_numpy(pose[:3, 3]) / np.linalg.norm(pose[:3, 3])
    assert torch.allclose(centre / centre.norm(), to_origin, atol=1e-4)
    assert rays[0, 0, 4] < rays[0, 15, 4] or rays[0, 0, 3] != rays[0, 15, 3]  # columns differ


def test_rasteriser_keeps_the_nearest_triangle() -> None:
    pose = np.eye(4)  # at the origin looking along +z
    near = np.array([[[-1.0, -1.0, 2.0], [1.0, -1.0, 2.0], [0.0, 1.0, 2.0]]])
    far = near * np.array([3.0, 3.0, 2.0])  # larger and behind
    index = rasterise(np.concatenate([far, near]), pose, focal=8.0, cx=8.0, cy=8.0, height=16, width=16)
    assert index[8, 8] == 1  # the near triangle hides the far one at the centre
    assert (index == 0).any() and (index == -1).any()  # the far one shows around it; corners see nothing


def test_volume_renderer_composites_over_the_background() -> None:
    renderer = VolumeRenderer(samples=8, near=1.0, far=2.0, background=1.0)
    rays = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    empty = lambda points: torch.full((1, points.shape[-2], 4), -30.0)  # noqa: E731 - no density anywhere
    assert torch.allclose(renderer(empty, rays), torch.ones(1, 1, 3), atol=1e-6)
    solid = lambda points: torch.stack(  # noqa: E731 - opaque, colour = sigmoid(0) = 0.5
        [torch.full(points.shape[:-1], 50.0), *[torch.zeros(points.shape[:-1])] * 3], dim=-1)[None]
    assert torch.allclose(renderer(solid, rays), torch.full((1, 1, 3), 0.5), atol=1e-5)
    torch.manual_seed(0)
    jittered = renderer(lambda p: torch.sin(p.sum(-1, keepdim=True)).expand(*p.shape[:-1], 4)[None], rays, True)
    assert jittered.shape == (1, 1, 3)


class _Identity(torch.nn.Module):
    """An observation operator that observes the field's output directly (for the equivalence test)."""

    expansion = 1

    def forward(self, field, coords, stochastic=False):
        return field(coords)


@pytest.mark.parametrize("scheme", ["functa", "vcinr"])
def test_autograd_inner_gradient_equals_the_explicit_one(scheme: str) -> None:
    """With an identity observation, the autograd fallback reproduces the hand-written gradient."""
    torch.manual_seed(0)
    siren = Siren(2, 3, 16, 3)
    options = {"hidden": 16, "rank": 2} if scheme == "vcinr" else {}
    fast = MetaINR(siren, build_conditioning(scheme, 8, siren.layer_shapes, **options))
    observed = MetaINR(fast.siren, fast.conditioning, observation=_Identity())
    coords, targets = torch.rand(40, 2), torch.rand(3, 40, 3)
    state = torch.randn(3, fast.conditioning.state_dim, requires_grad=True)
    explicit = fast._inner_grad(state, coords, targets)
    auto = observed._inner_grad(state, coords, targets)
    assert torch.allclose(explicit, auto, atol=1e-5, rtol=1e-4)
    # second order: both differentiate the same way w.r.t. the shared network
    g1 = torch.autograd.grad(explicit.square().sum(), fast.siren.hidden[0].weight)[0]
    g2 = torch.autograd.grad(auto.square().sum(), fast.siren.hidden[0].weight)[0]
    assert torch.allclose(g1, g2, atol=1e-4, rtol=1e-3)


def test_scene_items_hold_out_query_views_of_test_scenes(scenes: Path) -> None:
    config = scene_config(scenes)
    train_items, test_items = load_items(config.data, "train"), load_items(config.data, "test")
    assert train_items.features.shape == (3, 6, 16, 16, 3) and train_items.coords.shape == (3, 6, 16, 16, 6)
    assert train_items.query_features is None and train_items.max_points == 32
    assert test_items.features.shape == (1, 4, 16, 16, 3) and test_items.query_features.shape == (1, 2, 16, 16, 3)
    full = read_scene(scenes / "test" / "scene_0003")
    assert torch.equal(test_items.query_features[0], full.features[4:])  # the last views are held out
    assert torch.equal(test_items.query_coords[0], full.coords[4:])


def test_meta_training_on_scenes_improves_novel_views(scenes: Path, tmp_path: Path) -> None:
    """A few outer steps already beat the untrained initialisation on held-out views."""
    config = scene_config(scenes, steps=30)
    config.train.outer_lr = 1e-2
    result = train(config, tmp_path / "model", progress=False)
    assert result.final["psnr"] > result.initial["psnr"] + 1.0
    loaded = load_model(tmp_path / "model")
    assert loaded.spec.observation["kind"] == "volume" and loaded.model.observation.samples == 8
    again = evaluate(loaded.model, load_items(config.data, "test"), 1, 1)
    assert again["psnr"] == pytest.approx(result.final["psnr"], abs=1e-4)  # evaluation is deterministic


@pytest.fixture(scope="module")
def scene_model(scenes: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scene-model") / "model"
    train(scene_config(scenes, steps=4), out, progress=False)
    fit_codecs(out, settings=FitSettings(lambdas=(0.01,), bits=(6,), steps=10, batch_size=2, eval_items=2),
               progress=False)
    return out


@pytest.mark.parametrize("quality", ["u6", "1"])
def test_scene_round_trip_renders_exactly_what_the_encoder_predicts(scenes: Path, scene_model: Path,
                                                                     tmp_path: Path, quality: str) -> None:
    scene_dir = scenes / "test" / "scene_0003"
    report = compress_file(scene_dir, scene_model, quality, tmp_path / "scene.vci")
    assert report.bpp == 8 * (tmp_path / "scene.vci").stat().st_size / (6 * 16 * 16) and report.patches == 1
    decompress_file(tmp_path / "scene.vci", scene_model, tmp_path / "decoded")
    decoded = read_scene(tmp_path / "decoded")
    original = read_scene(scene_dir)
    assert torch.equal(decoded.coords, original.coords)  # the cameras travel in the bitstream
    # what the encoder's model renders from the stored φ̂ at the scene's own cameras
    loaded = load_model(scene_model)
    phi_hat, _, _ = decode_latents((tmp_path / "scene.vci").read_bytes(), loaded)
    torch.set_num_threads(1)
    with torch.no_grad():
        predicted = loaded.model.decode(original.coords.reshape(1, -1, 6), phi_hat).clamp(0, 1)
    expected = to_uint8(predicted.reshape(6, 16, 16, 3).numpy())
    written = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "decoded" / "rgb").iterdir())])
    assert np.array_equal(written, expected)
    mse = float((decoded.features.double() - original.features.double()).square().mean())
    assert report.value == pytest.approx(-10 * np.log10(mse), abs=1e-9)  # compress printed this PSNR
    # a second process decodes the same bytes to the same views
    other = tmp_path / "decoded-elsewhere"
    code = ("import sys; from vcinr.pipeline import decompress_file; "
            "decompress_file(sys.argv[1], sys.argv[2], sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "scene.vci"), str(scene_model), str(other)], check=True)
    assert all((other / "rgb" / p.name).read_bytes() == p.read_bytes() for p in (tmp_path / "decoded" / "rgb").iterdir())


def test_scene_commands(scenes: Path, scene_model: Path, tmp_path: Path, vcinr_main, capsys) -> None:
    vci = tmp_path / "scene.vci"
    assert vcinr_main(["compress", str(scenes / "test" / "scene_0003"), "--model", str(scene_model), "-q", "u6",
                       "-o", str(vci), "--quiet"]) == 0
    assert vcinr_main(["render-scene", str(vci), "--model", str(scene_model), "-o", str(tmp_path / "t.png"),
                       "--frames", "4", "--size", "12"]) == 0
    assert Image.open(tmp_path / "t.png").size == (48, 12)
    assert vcinr_main(["render-scene", str(vci), "--model", str(scene_model), "-o", str(tmp_path / "t.gif"),
                       "--frames", "3"]) == 0
    assert Image.open(tmp_path / "t.gif").n_frames == 3
    capsys.readouterr()
    assert vcinr_main(["compress", str(scenes / "test"), "--model", str(scene_model), "-o", str(tmp_path / "x.vci")]) == 2
    assert "not an SRN scene folder" in capsys.readouterr().err and not (tmp_path / "x.vci").exists()
    assert vcinr_main(["render-scene", str(vci), "--model", str(scene_model), "-o", str(tmp_path / "t.jpg")]) == 2
    assert vcinr_main(["make-scenes", str(scenes), "--quiet"]) == 2  # refuses a non-empty folder
    assert "already exists" in capsys.readouterr().err


def test_make_scenes_command_writes_the_srn_layout(tmp_path: Path, vcinr_main) -> None:
    if not DEFAULT_MESH.is_file():
        pytest.skip("the Stanford bunny mesh of ../shared/data is missing")
    out = tmp_path / "made"
    assert vcinr_main(["make-scenes", str(out), "--scenes", "2", "--test-scenes", "1", "--views", "2",
                       "--size", "8", "--quiet"]) == 0
    scene = out / "train" / "scene_0000"
    assert sorted(p.name for p in scene.iterdir()) == ["intrinsics.txt", "pose", "rgb"]
    assert len(list((scene / "rgb").iterdir())) == 2 and len(list((scene / "pose").iterdir())) == 2
    shutil.rmtree(out)


@pytest.mark.parametrize("text, message", [("100 16 16 0.\n0. 0. 0.\n1.\ninf 32\n", "image size must be two positive"),
                                           ("100 16 16 0.\n0. 0. 0.\n1.\nnan 32\n", "image size must be two positive")])
def test_intrinsics_with_a_non_finite_size_are_one_line(text, message, tmp_path):
    """int(inf) of an intrinsics file's image size was an OverflowError traceback (issue 14)."""
    from vcinr.modalities.scene import read_intrinsics

    (tmp_path / "intrinsics.txt").write_text(text)
    with pytest.raises(InputError, match=message):
        read_intrinsics(tmp_path / "intrinsics.txt")
