"""Multi-view test scenes of the Stanford bunny in the SRN Cars layout.

SRN Cars (the paper's scene dataset) is not redistributable here, so this builds a small
stand-in from the real Stanford bunny mesh: every scene is the bunny under a random rotation
about its vertical axis, in a random colour, seen from ``views`` random cameras on a sphere
of radius 1.3 around it (elevations −10°…60°, looking at the centre), with SRN Cars'
field of view (focal 131.25 px at 128 px) over a white background.  The mesh is scaled into
the unit-diameter ball, so it lies within SRN Cars' near/far bounds (0.8, 1.8).  Views are
rasterised (:mod:`vcinr.scenes.raster`) with 2×2 supersampling.

    vcinr make-scenes OUT [--scenes 10 --test-scenes 2 --views 30 --size 64 --seed 0]

writes ``OUT/train/scene_0000/…`` and ``OUT/test/…``, each an SRN scene folder.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vcinr.errors import InputError
from vcinr.modalities.scene import camera_rays, look_at, write_scene
from vcinr.modalities.voxels import read_ply
from vcinr.scenes.raster import rasterise, shade
from vcinr.scenes.settings import SceneSettings
from vcinr.signal import Signal

DEFAULT_MESH = (Path(__file__).resolve().parents[4] / "shared" / "data" / "voxels" / "stanford_bunny"
                / "bun_zipper_res3.ply")
RADIUS = 1.3  # camera distance, as SRN Cars
FOCAL_AT_128 = 131.25  # SRN Cars' focal length for 128 x 128 views
LIGHT = np.array([0.4, 0.8, 0.45])
UP = np.array([0.0, 1.0, 0.0])  # the bunny's (PLY) up axis


def camera_on_sphere(azimuth: float, elevation: float, radius: float = RADIUS) -> np.ndarray:
    """Pose of a camera at ``azimuth``/``elevation`` (radians) around the origin, y up."""
    eye = radius * np.array([math.cos(elevation) * math.sin(azimuth), math.sin(elevation),
                             math.cos(elevation) * math.cos(azimuth)])
    return look_at(eye, UP)


def normalised_mesh(path: Path) -> np.ndarray:
    """Triangles ``(T, 3, 3)`` centred on the bounding box and scaled into the unit-diameter ball."""
    vertices, faces = read_ply(path)
    vertices = vertices - (vertices.min(0) + vertices.max(0)) / 2
    vertices /= 2 * np.linalg.norm(vertices, axis=1).max()
    return vertices[faces]


def render_view(triangles: np.ndarray, albedo: np.ndarray, pose: np.ndarray, size: int,
                supersample: int = 2) -> np.ndarray:
    """One ``(size, size, 3)`` view in [0, 1], averaging ``supersample``² rays per pixel."""
    n = size * supersample
    focal = FOCAL_AT_128 * n / 128
    directions = camera_rays(pose[None], focal, n / 2, n / 2, n, n)[0, ..., 3:].double().numpy()
    index = rasterise(triangles, pose, focal, n / 2, n / 2, n, n)
    colour = shade(index, directions, triangles, albedo, LIGHT)
    return colour.reshape(size, supersample, size, supersample, 3).mean(axis=(1, 3))


def make_scene(triangles: np.ndarray, rng: np.random.Generator, settings: SceneSettings) -> Signal:
    """One random scene: rotated, coloured bunny seen from random cameras."""
    angle = rng.uniform(0, 2 * math.pi)
    c, s = math.cos(angle), math.sin(angle)
    rotation = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    rotated = triangles @ rotation.T
    albedo = rng.uniform(0.15, 0.9, 3)
    poses = np.stack([camera_on_sphere(rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(-10, 60)))
                      for _ in range(settings.views)])
    pixels = np.stack([render_view(rotated, albedo, pose, settings.size, settings.supersample) for pose in poses])
    # Store what an 8-bit PNG holds, so the signal equals the folder read back.
    features = torch.from_numpy((np.rint(pixels * 255) / 255).astype(np.float32))
    focal = FOCAL_AT_128 * settings.size / 128
    meta = {"focal": focal, "cx": settings.size / 2, "cy": settings.size / 2, "height": settings.size,
            "width": settings.size, "poses": poses.reshape(len(poses), 16).tolist()}
    rays = camera_rays(poses, focal, settings.size / 2, settings.size / 2, settings.size, settings.size)
    return Signal(features, rays, "scene", meta)


def make_scenes(out: str | Path, settings: SceneSettings | None = None, mesh: str | Path | None = None,
                progress: bool = True) -> list[Path]:
    """Write ``settings.scenes`` scene folders under ``out/train`` and ``out/test``."""
    settings = settings or SceneSettings()
    if settings.scenes < 2 or not 1 <= settings.test_scenes < settings.scenes:
        raise InputError("need at least 2 scenes and 1 <= test scenes < scenes")
    if settings.views < 1 or settings.size < 4 or settings.supersample < 1:
        raise InputError("need views >= 1, size >= 4 and supersample >= 1")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: already exists and is not empty")
    mesh = Path(mesh) if mesh is not None else DEFAULT_MESH
    if not mesh.is_file():
        raise InputError(f"{mesh}: no such mesh (pass --mesh PATH to a PLY file)")
    triangles = normalised_mesh(mesh)
    rng = np.random.default_rng(settings.seed)
    written = []
    for index in tqdm(range(settings.scenes), desc="rendering scenes", unit="scene", disable=not progress):
        split = "train" if index < settings.scenes - settings.test_scenes else "test"
        folder = out / split / f"scene_{index:04d}"
        folder.parent.mkdir(parents=True, exist_ok=True)
        write_scene(make_scene(triangles, rng, settings), folder)
        written.append(folder)
    return written
