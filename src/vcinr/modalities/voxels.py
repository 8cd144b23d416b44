"""Voxels: 3-D occupancy grids (ShapeNet-style), scored with binary cross-entropy.

Conventions (paper appendix A): grid axes as stored in the file; coordinates in ``[0, 1]^3``;
features are occupancies in ``{0, 1}`` (``out_dim`` 1).  The writer thresholds features at
0.5 and stores ``uint8`` occupancy in the container named by the suffix.

Containers: ``.npy`` / ``.npz`` (one 3-D array, or the one named ``voxels`` or ``occupancy``)
holding 0/1 values — scalar volumes such as a CT scan need ``threshold`` (occupied where
``value > threshold``) — and ``.binvox`` (run-length encoded, read and written here; the
array axes are binvox's x, y, z after undoing its x-z-y storage order).

:func:`voxelize_mesh` turns an ASCII PLY triangle mesh into an occupancy grid by ray-parity
voting along the three axes; :func:`rescale_occupancy` implements the paper's per-axis scale
augmentation.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from vcinr.errors import ConfigError, InputError
from vcinr.limits import MAX_INPUT_BYTES, read_bounded
from vcinr.modalities.base import Modality
from vcinr.modalities.common import check_suffix, load_npy, load_npz, reading, writing
from vcinr.modalities.datasets import Batch, DataKind, Source, check_counts, find_files, split_units
from vcinr.signal import MAX_POINTS, Signal, grid_coordinates

_NPZ_KEYS = ("voxels", "occupancy")


# --- binvox -------------------------------------------------------------------------------


def _read_binvox(raw: bytes, path: Path) -> tuple[np.ndarray, dict]:
    """Parse a binvox file: text header up to ``data``, then (value, count) byte pairs."""
    stream = io.BytesIO(raw)
    if not stream.readline().startswith(b"#binvox"):
        raise InputError(f"{path}: missing '#binvox' header")
    dims, meta = None, {"translate": [0.0, 0.0, 0.0], "scale": 1.0}
    for line in iter(stream.readline, b""):
        words = line.split() or [b""]
        if words[0] == b"data":
            break
        if words[0] == b"dim":
            dims = tuple(int(w) for w in words[1:4])
        elif words[0] == b"translate":
            meta["translate"] = [float(w) for w in words[1:4]]
        elif words[0] == b"scale":
            meta["scale"] = float(words[1])
    else:
        raise InputError(f"{path}: binvox header has no 'data' line")
    if dims is None or len(dims) != 3 or min(dims) <= 0:
        raise InputError(f"{path}: binvox header has no valid 'dim' line")
    if math.prod(dims) > MAX_POINTS:  # the run-length data expands up to 127x: check before it does
        raise InputError(f"{path}: a {dims} grid is more than vcinr reads ({MAX_POINTS} voxels)")
    pairs = np.frombuffer(stream.read(), dtype=np.uint8)
    if len(pairs) % 2:
        raise InputError(f"{path}: binvox data is truncated (odd number of run-length bytes)")
    values, counts = pairs[0::2], pairs[1::2]
    if counts.astype(np.int64).sum() != np.prod(dims):
        raise InputError(f"{path}: binvox data holds {counts.astype(np.int64).sum()} voxels, header says {dims}")
    flat = np.repeat(values > 0, counts)
    # binvox stores x outermost, then z, then y; swap the last two axes to get (x, y, z).
    return flat.reshape(dims).transpose(0, 2, 1), meta


def _binvox_bytes(occupancy: np.ndarray, translate: list[float], scale: float) -> bytes:
    """Encode an (x, y, z) boolean grid as binvox (runs of at most 255)."""
    stored_shape = (occupancy.shape[0], occupancy.shape[2], occupancy.shape[1])
    stored = np.ascontiguousarray(occupancy.transpose(0, 2, 1)).ravel().astype(np.uint8)
    starts = np.flatnonzero(np.r_[True, stored[1:] != stored[:-1]])
    lengths = np.diff(np.r_[starts, len(stored)])
    values = stored[starts]
    # split runs longer than 255 into full chunks plus a remainder
    chunks = -(-lengths // 255)
    run_values = np.repeat(values, chunks)
    run_counts = np.full(chunks.sum(), 255, dtype=np.int64)
    last = np.cumsum(chunks) - 1
    run_counts[last] = lengths - 255 * (chunks - 1)
    header = (
        "#binvox 1\n"
        f"dim {' '.join(str(d) for d in stored_shape)}\n"
        f"translate {' '.join(repr(float(t)) for t in translate)}\n"
        f"scale {float(scale)!r}\n"
        "data\n"
    ).encode()
    body = np.stack([run_values, run_counts.astype(np.uint8)], axis=1).tobytes()
    return header + body


# --- arrays --------------------------------------------------------------------------------


def _npz_volume(path: Path) -> tuple[np.ndarray, str]:
    arrays = load_npz(path)
    if len(arrays) == 1:
        [(key, volume)] = arrays.items()
        return volume, key
    for key in _NPZ_KEYS:
        if key in arrays:
            return arrays[key], key
    raise InputError(f"{path}: holds several arrays ({', '.join(arrays)}); name the grid 'voxels'")


def to_occupancy(volume: np.ndarray, path: Path, threshold: float | None = None) -> np.ndarray:
    """A 3-D 0/1 (or thresholded scalar) volume as a boolean occupancy grid."""
    volume = np.asarray(volume)
    if volume.ndim != 3 or 0 in volume.shape:
        raise InputError(f"{path}: a voxel grid must be a non-empty 3-D array, got shape {volume.shape}")
    if not (np.issubdtype(volume.dtype, np.number) or volume.dtype == np.bool_):
        raise InputError(f"{path}: a voxel grid must be numeric, got dtype {volume.dtype}")
    if np.issubdtype(volume.dtype, np.floating) and not np.isfinite(volume).all():
        raise InputError(f"{path}: contains NaN or infinite values")
    if threshold is not None:
        return volume > threshold
    if not np.isin(volume, (0, 1)).all():
        raise InputError(
            f"{path}: values range over [{volume.min()}, {volume.max()}], not 0/1 occupancy; "
            "give a threshold (data option 'threshold') for scalar volumes"
        )
    return volume.astype(bool)


def read_voxels(path: Path, threshold: float | None = None) -> Signal:
    """Read an occupancy grid (``threshold`` turns a scalar volume into one)."""
    path = Path(path)
    check_suffix(path, VoxelModality.suffixes, "voxel")
    suffix = path.suffix.lower()
    meta: dict = {"format": suffix}
    with reading(path, "voxel"):
        if suffix == ".binvox":
            volume, binvox_meta = _read_binvox(read_bounded(path, MAX_INPUT_BYTES, "voxel file", InputError), path)
            meta.update(binvox_meta)
        elif suffix == ".npz":
            volume, meta["key"] = _npz_volume(path)
        else:
            volume = load_npy(path)
    occupancy = to_occupancy(volume, path, threshold)
    if threshold is not None:
        meta["threshold"] = float(threshold)
    return occupancy_signal(occupancy, meta)


def occupancy_signal(occupancy: np.ndarray, meta: dict | None = None) -> Signal:
    """Wrap a boolean grid as a voxel :class:`Signal` (coordinates in ``[0, 1]^3``)."""
    features = torch.from_numpy(occupancy.astype(np.float32)[..., None])
    return Signal(features, grid_coordinates(occupancy.shape, 0.0, 1.0), "voxels", dict(meta or {}))


def write_voxels(signal: Signal, path: Path) -> None:
    """Threshold features at 0.5 and store ``uint8`` occupancy in the format of ``path``."""
    path = Path(path)
    check_suffix(path, VoxelModality.write_suffixes, "voxel")
    if signal.features.ndim != 4 or signal.out_dim != 1:
        raise InputError(f"a voxel grid needs features of shape (D, H, W, 1), got {tuple(signal.features.shape)}")
    occupancy = (signal.features[..., 0] >= 0.5).cpu().numpy().astype(np.uint8)
    suffix = path.suffix.lower()
    with writing(path) as tmp, open(tmp, "wb") as handle:
        if suffix == ".binvox":
            translate, scale = signal.meta.get("translate", [0.0] * 3), signal.meta.get("scale", 1.0)
            handle.write(_binvox_bytes(occupancy, translate, scale))
        elif suffix == ".npz":
            np.savez_compressed(handle, **{signal.meta.get("key", "voxels"): occupancy})
        else:
            np.save(handle, occupancy)


# --- meshes and augmentation ---------------------------------------------------------------


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(V, 3)`` and triangles ``(F, 3)`` of an ASCII PLY (polygons fan-triangulated).

    Element counts are capped at ``MAX_POINTS`` and only the lines they declare are split, so
    the Python objects parsed are bounded by the header, not by a file of millions of lines.
    """
    path = Path(path)
    with reading(path, "PLY mesh"):
        text = path.read_text(encoding="ascii", errors="replace")
        header, sep, body = text.partition("end_header")
        lines = header.splitlines()
        if not sep or not lines or lines[0].strip() != "ply":
            raise InputError(f"{path}: not a PLY file")
        if "format ascii" not in header:
            raise InputError(f"{path}: only ASCII PLY meshes are supported")
        elements: list[tuple[str, int, list[str]]] = []
        for line in lines[1:]:
            words = line.split()
            if words[:1] == ["element"]:
                elements.append((words[1], int(words[2]), []))
                if not 0 <= elements[-1][1] <= MAX_POINTS:
                    raise InputError(f"{path}: a PLY '{words[1]}' element of {words[2]} rows is more than vcinr reads")
            elif words[:1] == ["property"] and elements:
                elements[-1][2].append(words[-1])
        needed = sum(count for _, count, _ in elements)
        rows = body.split("\n", needed + 1)[1 : needed + 1]
        vertices = faces = None
        start = 0
        for name, count, props in elements:
            block = rows[start : start + count]
            start += count
            if len(block) != count:
                raise InputError(f"{path}: file ends inside the '{name}' element")
            if name == "vertex":
                columns = [props.index(axis) for axis in ("x", "y", "z")]
                vertices = np.array([line.split() for line in block], dtype=np.float64)[:, columns]
            elif name == "face":
                faces = _triangulate([[int(w) for w in line.split()] for line in block])
    if vertices is None or faces is None or len(faces) == 0:
        raise InputError(f"{path}: the PLY file has no vertices or no faces")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise InputError(f"{path}: face indices out of range")
    return vertices, faces


def _triangulate(polygons: list[list[int]]) -> np.ndarray:
    """Fan-triangulate ``[n, i0, i1, ..., i(n-1)]`` face rows."""
    triangles = [(row[1], row[k], row[k + 1]) for row in polygons for k in range(2, row[0])]
    return np.array(triangles, dtype=np.int64).reshape(-1, 3)


def voxelize_mesh(ply_path: Path, resolution: int) -> np.ndarray:
    """Occupancy ``(resolution,)*3`` (axes x, y, z) of a triangle mesh, tolerant of holes.

    The mesh is scaled uniformly so its longest side spans the grid and centred.  For each axis,
    a ray through every column of voxel centres counts surface crossings; a voxel is inside
    along that ray when an odd number of crossings lie before it.  Rays with an odd total
    (they passed through a hole) abstain, and a voxel is occupied when most non-abstaining
    rays say so — the parity-voting scheme of binvox, vectorised with numpy.
    """
    if resolution <= 0:
        raise InputError(f"resolution must be positive, got {resolution}")
    vertices, faces = read_ply(Path(ply_path))
    low, high = vertices.min(0), vertices.max(0)
    extent = float((high - low).max()) or 1.0
    scaled = (vertices - (low + high) / 2) * (resolution / extent) + resolution / 2
    # voxel centres at integer positions; tiny irrational offsets keep rays off edges/vertices
    triangles = scaled[faces] - 0.5 + np.array([1e-6 * np.sqrt(2), 1e-6 * np.sqrt(3), 1e-6 * np.sqrt(5)])
    inside_votes = np.zeros((resolution,) * 3, dtype=np.int8)
    valid_votes = np.zeros((resolution,) * 3, dtype=np.int8)
    for axis in range(3):
        inside, valid = _ray_parity(triangles, resolution, axis)
        order = np.argsort([a for a in range(3) if a != axis] + [axis])
        inside_votes += (inside & valid[..., None]).transpose(order)
        valid_votes += np.broadcast_to(valid[..., None], inside.shape).transpose(order)
    return 2 * inside_votes > valid_votes


def _ray_parity(triangles: np.ndarray, n: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Inside-parity ``(n, n, n)`` along rays parallel to ``axis`` and ray validity ``(n, n)``.

    Returned arrays are indexed ``(u, v, w)`` with ``u < v`` the two other axes and ``w`` the
    ray axis.
    """
    u_axis, v_axis = (a for a in range(3) if a != axis)
    u, v, w = triangles[..., u_axis], triangles[..., v_axis], triangles[..., axis]
    # every (triangle, ray) pair whose ray lies in the triangle's bounding box
    u0 = np.clip(np.ceil(u.min(1)), 0, n).astype(np.int64)
    u1 = np.clip(np.floor(u.max(1)), -1, n - 1).astype(np.int64)
    v0 = np.clip(np.ceil(v.min(1)), 0, n).astype(np.int64)
    v1 = np.clip(np.floor(v.max(1)), -1, n - 1).astype(np.int64)
    nu, nv = np.maximum(u1 - u0 + 1, 0), np.maximum(v1 - v0 + 1, 0)
    per_triangle = nu * nv
    tri = np.repeat(np.arange(len(triangles)), per_triangle)
    offset = np.arange(len(tri)) - np.repeat(np.cumsum(per_triangle) - per_triangle, per_triangle)
    ru = u0[tri] + offset // nv[tri]
    rv = v0[tri] + offset % nv[tri]
    # barycentric coordinates of the ray in the projected triangle
    ua, ub, uc = (u[tri, k] - ru for k in range(3))
    va, vb, vc = (v[tri, k] - rv for k in range(3))
    area = (ub - ua) * (vc - va) - (uc - ua) * (vb - va)
    safe_area = np.where(area == 0, np.inf, area)  # edge-on triangles: never hit
    la = (ub * vc - uc * vb) / safe_area
    lb = (uc * va - ua * vc) / safe_area
    lc = 1.0 - la - lb
    hit = (area != 0) & (la >= 0) & (lb >= 0) & (lc >= 0)
    depth = la * w[tri, 0] + lb * w[tri, 1] + lc * w[tri, 2]
    # a crossing at depth d lies before every voxel centre with index > d
    first_after = np.clip(np.ceil(depth[hit]), 0, n).astype(np.int64)
    crossings = np.zeros((n, n, n + 1), dtype=np.int32)
    np.add.at(crossings, (ru[hit], rv[hit], first_after), 1)
    before = np.cumsum(crossings, axis=2)[..., :n]
    return before % 2 == 1, crossings.sum(axis=2) % 2 == 0


def rescale_occupancy(
    occupancy: np.ndarray, factors: tuple[float, float, float], shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """Scale a grid per axis (trilinear, threshold 0.5), then centre-crop/pad to ``shape``.

    With ``shape`` left as the input shape this is the paper's ShapeNet augmentation (random
    per-axis scales in [0.75, 1.25]); with ``factors = shape / occupancy.shape`` it resamples
    a grid to another resolution.
    """
    from scipy import ndimage  # ~0.25 s to import: only when voxels are rescaled, not at every start

    shape = tuple(occupancy.shape) if shape is None else tuple(shape)
    zoomed = ndimage.zoom(occupancy.astype(np.float32), factors, order=1, grid_mode=True, mode="grid-constant") > 0.5
    out = np.zeros(shape, dtype=bool)
    src, dst = [], []
    for have, want in zip(zoomed.shape, shape):
        lo_src, lo_dst = max(0, (have - want) // 2), max(0, (want - have) // 2)
        size = min(have, want)
        src.append(slice(lo_src, lo_src + size))
        dst.append(slice(lo_dst, lo_dst + size))
    out[tuple(dst)] = zoomed[tuple(src)]
    return out


_MESH_RESOLUTION = 32  # data.options.resolution for PLY meshes when not given


@functools.lru_cache(maxsize=1)
def _shape_file(path: Path, resolution: int | None, threshold: float | None) -> np.ndarray:
    if path.suffix.lower() == ".ply":
        return voxelize_mesh(path, resolution or _MESH_RESOLUTION)
    occupancy = read_voxels(path, threshold).features[..., 0].numpy() > 0.5
    if resolution and occupancy.shape != (resolution,) * 3:
        factors = tuple(resolution / n for n in occupancy.shape)
        occupancy = rescale_occupancy(occupancy, factors, (resolution,) * 3)
    return occupancy


class VoxelShapes(DataKind):
    """Voxel grids and PLY meshes, and scale-augmented copies of them.

    Options: ``resolution`` — PLY meshes are voxelised at it (default 32) and grids resampled to
    it when given; ``threshold`` — occupancy of scalar volumes is ``value > threshold``;
    ``scale_augment`` — extra copies per shape, each scaled per axis by a random factor in
    [0.75, 1.25] (the paper's ShapeNet augmentation).
    """

    name, modality = "voxels", "voxels"
    options = MappingProxyType({"resolution": None, "threshold": None, "scale_augment": 0})

    def check_options(self, options: dict[str, Any], patch: list[int] | None) -> None:
        check_counts(options, 0, "scale_augment")
        check_counts(options, 1, "resolution")
        if options["resolution"] is not None and options["resolution"] ** 3 > MAX_POINTS:
            raise ConfigError(f"data.options.resolution must give at most {MAX_POINTS} voxels, got "
                              f"{options['resolution']}^3")
        threshold = options["threshold"]
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
            raise ConfigError(f"data.options.threshold must be a number, got {threshold!r}")

    def units(self, source: Source, root: Path, split: str) -> list[tuple[Path, int]]:
        """(file, copy) pairs; copy 0 is the shape itself, 1.. its scale-augmented versions.

        Files are split when there are several (so copies of one shape never straddle the
        split); a single file's copies are split among themselves.
        """
        files = find_files(root, (*VoxelModality.suffixes, ".ply"), "voxel")
        copies = range(1 + source.options["scale_augment"])
        if len(files) > 1:
            return [(f, c) for f in split_units(files, source, split, "voxel files") for c in copies]
        return split_units([(files[0], c) for c in copies], source, split,
                           "copies of one shape (set data.options.scale_augment)")

    def load(self, source: Source, unit: tuple[Path, int], split: str, rng: np.random.Generator) -> Batch:
        path, copy = unit
        occupancy = _shape_file(path, source.options["resolution"], source.options["threshold"])
        if copy:
            occupancy = rescale_occupancy(occupancy, tuple(rng.uniform(0.75, 1.25, 3)))
        features = torch.from_numpy(occupancy.astype(np.float32)[None, ..., None])
        return Batch(features, grid_coordinates(occupancy.shape, 0.0, 1.0))

    def forget(self) -> None:
        _shape_file.cache_clear()


class VoxelModality(Modality):
    name = "voxels"
    suffixes = (".binvox", ".npy", ".npz")
    write_suffixes = (".binvox", ".npy", ".npz")
    coord_range = (0.0, 1.0)
    loss = "bce"
    in_dim = 3

    def data_kinds(self) -> list[DataKind]:
        return [VoxelShapes()]

    def read(self, path: Path) -> Signal:
        return read_voxels(path)

    def write(self, signal: Signal, path: Path) -> None:
        write_voxels(signal, path)
