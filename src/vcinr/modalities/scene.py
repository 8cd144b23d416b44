"""3-D scenes: a set of posed RGB views of one object (SRN Cars, paper Table 1 "SRN Cars").

A scene is read from a folder in the layout of Scene Representation Networks (Sitzmann et
al., 2019), which pixelNeRF and Functa use for SRN Cars::

    scene/intrinsics.txt     "f cx cy 0." / "0. 0. 0." / "1." / "H W"  (SRN's format)
    scene/rgb/000000.png     one view (RGB, or RGBA composited over white)
    scene/pose/000000.txt    its camera-to-world matrix, 16 numbers (row-major 4x4)

Conventions: poses are OpenCV-style camera-to-world matrices (camera x right, y down, z
forward), as SRN stores them.  Pixel ``(row v, column u)`` looks through its centre
``((u + ½ − cx) / f, (v + ½ − cy) / f, 1)`` in camera coordinates.  The :class:`Signal` of a
scene has a grid ``(views, H, W)``: features are the pixels in ``[0, 1]`` (``out_dim`` 3) and
coordinates are the pixels' *rays* — origin and unit direction in world space (``in_dim``
6).  The radiance field that explains the pixels is queried at points along these rays by
the volume renderer (:mod:`vcinr.inr.render`); the intrinsics and poses are kept in
``meta``, so a decoder can recompute every ray (:meth:`SceneModality.coords_from_meta`) and
the writer can restore the folder.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from vcinr.errors import ConfigError, InputError
from vcinr.limits import MAX_JSON_BYTES, read_bounded
from vcinr.modalities.base import Modality
from vcinr.modalities.datasets import (DataKind, OwnCoordinateItems, Source, check_counts, check_size,
                                       split_units)
from vcinr.modalities.common import one_line, reading, to_uint8, writing
from vcinr.signal import MAX_POINTS, Signal

INTRINSICS = "intrinsics.txt"


def camera_rays(poses: np.ndarray, focal: float, cx: float, cy: float, height: int, width: int) -> torch.Tensor:
    """Rays ``(views, H, W, 6)`` — world origin and unit direction — of every pixel of every view.

    Computed in float64 and rounded once, so the encoder, the decoder and the scene
    generator agree on every ray bit for bit.
    """
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 4, 4)
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    local = np.stack([(u + 0.5 - cx) / focal, (v + 0.5 - cy) / focal, np.ones_like(u)], axis=-1)  # (H, W, 3)
    directions = np.einsum("vij,hwj->vhwi", poses[:, :3, :3], local)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    origins = np.broadcast_to(poses[:, None, None, :3, 3], directions.shape)
    return torch.from_numpy(np.concatenate([origins, directions], axis=-1).astype(np.float32))


def look_at(eye: np.ndarray, up: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """OpenCV-style camera-to-world matrix (x right, y down, z forward) at ``eye`` facing ``target``."""
    target = np.zeros(3) if target is None else np.asarray(target, dtype=np.float64)
    forward = (target - eye) / np.linalg.norm(target - eye)
    down = -(up - up @ forward * forward)
    down /= np.linalg.norm(down)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = np.cross(down, forward), down, forward, eye
    return pose


def _numbers(path: Path, line: str, count: int | None = None) -> list[float]:
    try:
        values = [float(w) for w in line.split()]
    except ValueError:
        raise InputError(f"{path}: expected numbers, got {one_line(line)!r}") from None
    if count is not None and len(values) < count:
        raise InputError(f"{path}: expected {count} numbers, got {len(values)}")
    return values


def read_intrinsics(path: Path) -> tuple[float, float, float, tuple[int, int] | None]:
    """``(f, cx, cy, (H, W) or None)`` from an SRN ``intrinsics.txt``."""
    with reading(path, "SRN intrinsics"):
        text = read_bounded(path, MAX_JSON_BYTES, "SRN intrinsics file", InputError).decode()
        lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError(f"{path}: empty intrinsics file")
    focal, cx, cy = _numbers(path, lines[0], 3)[:3]
    if focal <= 0:
        raise InputError(f"{path}: focal length must be positive, got {focal}")
    size = None
    if len(lines) >= 4:
        hw = _numbers(path, lines[3], 2)
        if not all(math.isfinite(n) and 0 < n <= MAX_POINTS for n in hw[:2]):  # int(inf) would be a traceback
            raise InputError(f"{path}: image size must be two positive numbers, got {hw[:2]}")
        size = (int(hw[0]), int(hw[1]))
    return focal, cx, cy, size


def read_pose(path: Path) -> np.ndarray:
    """A 4x4 camera-to-world matrix (16 numbers on one or four lines)."""
    with reading(path, "pose"):
        text = read_bounded(path, MAX_JSON_BYTES, "pose file", InputError).decode()
    values = _numbers(path, text, 16)
    pose = np.array(values[:16], dtype=np.float64).reshape(4, 4)
    if not np.isfinite(pose).all() or abs(np.linalg.det(pose[:3, :3])) < 1e-6:
        raise InputError(f"{path}: not a camera-to-world matrix")
    return pose


def _read_view(path: Path, size: int | None) -> np.ndarray:
    with reading(path, "image"), Image.open(path) as img:
        img.load()
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, rgba)
        img = img.convert("RGB")
        if size is not None and img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BOX)
        return np.asarray(img, dtype=np.uint8)


def is_scene_dir(path: Path) -> bool:
    return path.is_dir() and (path / INTRINSICS).is_file() and (path / "rgb").is_dir()


def read_scene(path: Path, views: int | None = None, size: int | None = None) -> Signal:
    """Read an SRN scene folder (its first ``views`` views, resized to ``size`` × ``size``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such folder")
    if not is_scene_dir(path):
        raise InputError(f"{path}: not an SRN scene folder (needs {INTRINSICS}, rgb/ and pose/)")
    focal, cx, cy, stated = read_intrinsics(path / INTRINSICS)
    images = sorted(p for p in (path / "rgb").iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))
    if views is not None:
        images = images[:views]
    if not images:
        raise InputError(f"{path}: no views in rgb/")
    pixels, poses, points = [], [], 0
    for image in images:
        pose_file = path / "pose" / f"{image.stem}.txt"
        if not pose_file.is_file():
            raise InputError(f"{path}: view {image.name} has no pose/{pose_file.name}")
        pixels.append(_read_view(image, size))
        points += pixels[-1].shape[0] * pixels[-1].shape[1]
        if points > MAX_POINTS:  # a scene is one signal, its views all held at once
            raise InputError(f"{path}: more than {MAX_POINTS} pixels in its views, more than vcinr reads")
        poses.append(read_pose(pose_file))
    shapes = {p.shape for p in pixels}
    if len(shapes) != 1:
        raise InputError(f"{path}: views differ in size ({', '.join(str(s[:2]) for s in sorted(shapes))})")
    height, width = pixels[0].shape[:2]
    # Intrinsics are stated for (H, W) = ``stated``; rescale them to the views as loaded.
    scale = width / stated[1] if stated else 1.0
    if size is not None and not stated:
        raise InputError(f"{path}: resizing needs the image size on line 4 of {INTRINSICS}")
    focal, cx, cy = focal * scale, cx * scale, cy * scale
    pose_array = np.stack(poses)
    meta = {"focal": focal, "cx": cx, "cy": cy, "height": height, "width": width,
            "poses": pose_array.reshape(len(poses), 16).tolist()}
    features = torch.from_numpy(np.stack(pixels).astype(np.float32) / 255.0)
    return Signal(features, camera_rays(pose_array, focal, cx, cy, height, width), "scene", meta)


def scene_coords(meta: dict, grid: tuple[int, ...]) -> torch.Tensor:
    """The rays of a scene from its ``meta`` (poses and intrinsics), checked against ``grid``."""
    try:
        poses = np.array(meta["poses"], dtype=np.float64)
        focal, cx, cy = float(meta["focal"]), float(meta["cx"]), float(meta["cy"])
        height, width = int(meta["height"]), int(meta["width"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise InputError("scene meta lacks valid poses and intrinsics") from None
    if poses.shape != (grid[0], 16) or (height, width) != tuple(grid[1:]) or not np.isfinite(poses).all():
        raise InputError(f"scene meta describes {len(poses)} views of {height}x{width}, not a {list(grid)} grid")
    return camera_rays(poses, focal, cx, cy, height, width)


def _format(values: np.ndarray) -> str:
    return " ".join(repr(float(v)) for v in values)


def write_scene(signal: Signal, path: Path) -> None:
    """Write an SRN scene folder; refuses an existing non-empty folder, never leaves half of one."""
    path = Path(path)
    if signal.features.ndim != 4 or signal.out_dim != 3:
        raise InputError(f"a scene needs features of shape (views, H, W, 3), got {tuple(signal.features.shape)}")
    coords = scene_coords(signal.meta, signal.grid_shape)  # validates the meta
    del coords
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InputError(f"{path}: already exists; choose a new folder for the scene")
    meta = signal.meta
    with writing(path, directory=True) as tmp:  # replaces an empty folder, never a full one
        (tmp / "rgb").mkdir()
        (tmp / "pose").mkdir()
        (tmp / INTRINSICS).write_text(f"{float(meta['focal'])!r} {float(meta['cx'])!r} {float(meta['cy'])!r} 0.\n"
                                      f"0. 0. 0.\n1.\n{int(meta['height'])} {int(meta['width'])}\n")
        pixels = to_uint8(signal.features.detach().cpu().numpy())
        for index, (image, pose) in enumerate(zip(pixels, np.array(meta["poses"], dtype=np.float64))):
            Image.fromarray(image, "RGB").save(tmp / "rgb" / f"{index:06d}.png")
            rows = pose.reshape(4, 4)
            (tmp / "pose" / f"{index:06d}.txt").write_text("\n".join(_format(r) for r in rows) + "\n")


def _scene_dirs(source: Source, root: Path, split: str) -> list[Path]:
    """Scene folders of ``split``: from ``train``/``test`` sub-folders, else split by name."""
    for name in (split, f"*_{split}"):
        folders = sorted(p for p in root.glob(name) if p.is_dir()) if root.is_dir() else []
        if folders:
            scenes = sorted(d for f in folders for d in f.iterdir() if is_scene_dir(d))
            if not scenes:
                raise InputError(f"{folders[0]}: holds no SRN scene folders")
            return scenes
    if is_scene_dir(root):
        raise InputError(f"{root}: is a single scene; point data.path at a folder of scenes")
    scenes = sorted(d for d in root.iterdir() if is_scene_dir(d)) if root.is_dir() else []
    if not scenes:
        raise InputError(f"{root}: no SRN scene folders (with intrinsics.txt, rgb/ and pose/) found")
    return split_units(scenes, source, split, "scenes")


class SceneSet(DataKind):
    """SRN scenes as items: context views to adapt on, and for the test split held-out query views.

    Options: ``views`` — the first views of each scene (default all; all scenes need as many);
    ``size`` — views resized to ``size`` × ``size``; ``query_views`` — the last views of every
    *test* scene are held out of the inner loop and scored (novel views); ``rays_per_item`` —
    random rays per scene in each inner-loop step; ``samples``, ``near``, ``far``,
    ``view_dirs`` — volume rendering (:class:`vcinr.inr.render.VolumeRenderer`).
    """

    name, modality = "scenes", "scene"
    options = MappingProxyType({"views": None, "size": None, "query_views": 8, "rays_per_item": 256, "samples": 32,
                                "near": 0.8, "far": 1.8, "view_dirs": False})

    def check_options(self, options: dict[str, Any], patch: list[int] | None) -> None:
        check_counts(options, 1, "rays_per_item", "samples", "views")
        check_counts(options, 0, "query_views")
        for name in ("near", "far"):
            value = options[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"data.options.{name} must be a number >= 0, got {value!r}")
        if options["near"] >= options["far"]:
            raise ConfigError("data.options.near must be smaller than data.options.far")
        if not isinstance(options["view_dirs"], bool):
            raise ConfigError(f"data.options.view_dirs must be true or false, got {options['view_dirs']!r}")
        if options["size"] is not None:
            check_size(options)

    def whole_items(self, source: Source, split: str) -> OwnCoordinateItems:
        options = source.options
        scenes = _scene_dirs(source, Path(source.path), split)
        if source.max_items and len(scenes) > source.max_items:
            keep = np.sort(np.random.default_rng(source.seed).choice(len(scenes), source.max_items, replace=False))
            scenes = [scenes[i] for i in keep]
        held_out = options["query_views"] if split == "test" else 0
        signals = [read_scene(d, options["views"], options["size"])
                   for d in tqdm(scenes, desc=f"loading scenes {split}", leave=False,
                                 disable=True if len(scenes) < 20 else None)]
        shape = signals[0].grid_shape
        for directory, signal in zip(scenes, signals):
            if signal.grid_shape != shape:
                raise InputError(f"{directory}: {signal.grid_shape[0]} views of {list(signal.grid_shape[1:])} but the "
                                 f"first scene has {shape[0]} of {list(shape[1:])}; set data.options.views / size")
        if shape[0] <= held_out:
            raise InputError(f"{scenes[0]}: {shape[0]} views leave none to adapt on after {held_out} query views")
        features = torch.stack([s.features for s in signals])
        coords = torch.stack([s.coords for s in signals])
        context = shape[0] - held_out
        observation = {"kind": "volume", "samples": options["samples"], "near": float(options["near"]),
                       "far": float(options["far"]), "view_dirs": options["view_dirs"]}
        return OwnCoordinateItems(features[:, :context], coords[:, :context],
                                  features[:, context:] if held_out else None,
                                  coords[:, context:] if held_out else None, observation, options["rays_per_item"])


class SceneModality(Modality):
    name = "scene"
    suffixes = ()  # a scene is a folder
    write_suffixes = ()
    directory = True
    coord_range = None  # rays, not a regular grid: scenes are fitted whole, never patched
    loss = "mse"
    in_dim = 6

    def data_kinds(self) -> list[DataKind]:
        return [SceneSet()]

    def read(self, path: Path) -> Signal:
        return read_scene(path)

    def write(self, signal: Signal, path: Path) -> None:
        write_scene(signal, path)

    def coords_from_meta(self, meta: dict, grid: tuple[int, ...]) -> torch.Tensor | None:
        return scene_coords(meta, grid)
