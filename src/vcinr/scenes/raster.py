"""A small z-buffer rasteriser for triangle meshes (numpy), used to render test scenes.

No OpenGL is needed.  Every triangle is projected with the pinhole camera of
:func:`vcinr.modalities.scene.camera_rays`; each pixel centre inside a triangle's screen
bounding box is tested against it (barycentric coordinates), depths are interpolated as
``1/z`` (perspective-correct) and the nearest triangle wins per pixel.  For pixel centres
this is exactly a ray cast of the same rays the volume renderer learns from.  The winner is
shaded Lambertian — ambient plus one directional light — in a flat colour; pixels that see
no triangle show the background.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def rasterise(triangles: np.ndarray, pose: np.ndarray, focal: float, cx: float, cy: float,
              height: int, width: int) -> np.ndarray:
    """Index of the nearest triangle at every pixel centre ``(H, W)`` (``-1``: none).

    Args:
        triangles: ``(T, 3, 3)`` world-space vertices, all in front of the camera.
        pose: OpenCV camera-to-world matrix (x right, y down, z forward).
    """
    rotation, eye = pose[:3, :3], pose[:3, 3]
    cam = (triangles - eye) @ rotation  # world → camera: R^T (X - t), row vectors
    z = cam[..., 2]
    if (z <= EPS).any():
        raise ValueError("a triangle lies behind the camera")
    u = focal * cam[..., 0] / z + cx  # continuous pixel coordinates; centres at index + 0.5
    v = focal * cam[..., 1] / z + cy
    u0 = np.clip(np.ceil(u.min(1) - 0.5), 0, width).astype(np.int64)
    u1 = np.clip(np.floor(u.max(1) - 0.5), -1, width - 1).astype(np.int64)
    v0 = np.clip(np.ceil(v.min(1) - 0.5), 0, height).astype(np.int64)
    v1 = np.clip(np.floor(v.max(1) - 0.5), -1, height - 1).astype(np.int64)
    nu, nv = np.maximum(u1 - u0 + 1, 0), np.maximum(v1 - v0 + 1, 0)
    count = nu * nv
    tri = np.repeat(np.arange(len(triangles)), count)
    offset = np.arange(len(tri)) - np.repeat(np.cumsum(count) - count, count)
    pu = (u0[tri] + offset % nu[tri]).astype(np.float64)
    pv = (v0[tri] + offset // nu[tri]).astype(np.float64)
    cu, cv = pu + 0.5, pv + 0.5
    ua, ub, uc = (u[tri, k] - cu for k in range(3))
    va, vb, vc = (v[tri, k] - cv for k in range(3))
    area = (ub - ua) * (vc - va) - (uc - ua) * (vb - va)
    safe = np.where(np.abs(area) < EPS, np.inf, area)  # edge-on triangles cover nothing
    la = (ub * vc - uc * vb) / safe
    lb = (uc * va - ua * vc) / safe
    lc = 1.0 - la - lb
    inside = (la >= 0) & (lb >= 0) & (lc >= 0) & np.isfinite(safe)
    inv_depth = (la / z[tri, 0] + lb / z[tri, 1] + lc / z[tri, 2])[inside]
    pixel = (pv.astype(np.int64) * width + pu.astype(np.int64))[inside]
    tri = tri[inside]
    nearest = np.full(height * width, -np.inf)
    np.maximum.at(nearest, pixel, inv_depth)
    winners = inv_depth == nearest[pixel]
    index = np.full(height * width, -1, dtype=np.int64)
    index[pixel[winners]] = tri[winners]
    return index.reshape(height, width)


def shade(index: np.ndarray, directions: np.ndarray, triangles: np.ndarray, albedo: np.ndarray,
          light: np.ndarray, ambient: float = 0.35, background: float = 1.0) -> np.ndarray:
    """RGB ``(*index.shape, 3)`` in [0, 1]: Lambertian shading of each pixel's triangle.

    ``directions`` ``(*index.shape, 3)`` are the pixels' view rays (normals are turned to
    face them).
    """
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), EPS)
    hit = index >= 0
    n = normals[index[hit]]
    n *= -np.sign(np.einsum("rk,rk->r", n, directions[hit]))[:, None]
    light = np.asarray(light, dtype=np.float64) / np.linalg.norm(light)
    lambert = np.clip(n @ light, 0.0, None)
    colour = np.full((*index.shape, 3), background, dtype=np.float64)
    colour[hit] = np.clip(np.asarray(albedo)[None] * (ambient + (1.0 - ambient) * lambert[:, None]), 0.0, 1.0)
    return colour
