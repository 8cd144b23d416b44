"""Render a decoded scene from new viewpoints: a turntable around the object.

The orbit is derived from the scene's own cameras (as stored in the bitstream): it circles
the world origin (SRN scenes are centred there) at the cameras' mean distance, about the
"up" axis the cameras agree on (the mean of their image-up directions), at the elevation of
the first camera.  Frames are rendered from the decoded latents φ̂ alone, so views the
encoder never saw show what the code stores about the object's 3-D shape.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from vcinr.errors import BitstreamError, InputError
from vcinr.limits import MAX_VCI_BYTES, read_bounded
from vcinr.meta.model import load_model
from vcinr.modalities.common import to_uint8, writing
from vcinr.modalities.scene import camera_rays, look_at
from vcinr.pipeline import decode_latents, map_batches

GRID_COLUMNS = 6


def orbit_poses(poses: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` camera-to-world matrices evenly around the origin, fitted to ``poses`` ``(V, 4, 4)``."""
    eyes = poses[:, :3, 3]
    up = -poses[:, :3, 1].mean(axis=0)
    if np.linalg.norm(up) < 1e-6:
        raise InputError("the scene's cameras agree on no up direction; cannot place a turntable")
    up /= np.linalg.norm(up)
    radius = float(np.linalg.norm(eyes, axis=1).mean())
    first = eyes[0] / np.linalg.norm(eyes[0])
    elevation = math.asin(float(np.clip(first @ up, -0.99, 0.99)))
    side = first - (first @ up) * up
    side = side / np.linalg.norm(side) if np.linalg.norm(side) > 1e-6 else np.cross(up, [1.0, 0.0, 0.0])
    other = np.cross(up, side)
    poses_out = []
    for k in range(frames):
        angle = 2 * math.pi * k / frames
        direction = math.cos(elevation) * (math.cos(angle) * side + math.sin(angle) * other) + math.sin(elevation) * up
        poses_out.append(look_at(radius * direction, up))
    return np.stack(poses_out)


def render_turntable(vci: str | Path, model_dir: str | Path, output: str | Path, frames: int = 12,
                     size: int | None = None) -> Path:
    """Decode ``vci`` (a scene) and write ``frames`` turntable views as a PNG grid or an animated GIF."""
    vci, output = Path(vci), Path(output)
    suffix = output.suffix.lower()
    if suffix not in (".png", ".gif"):
        raise InputError(f"{output}: write the turntable as .png (a grid) or .gif (an animation)")
    if frames < 1 or (size is not None and size < 4):
        raise InputError("need frames >= 1 and size >= 4")
    if not vci.is_file():
        raise InputError(f"{vci}: no such file")
    loaded = load_model(model_dir)
    if loaded.spec.modality != "scene":
        raise InputError(f"{model_dir} codes {loaded.spec.modality} data, not scenes")
    phi_hat, header, _ = decode_latents(read_bounded(vci, MAX_VCI_BYTES, "bitstream", BitstreamError), loaded, vci.name)
    meta = header.meta
    scale = 1.0 if size is None else size / int(meta["width"])
    height, width = round(int(meta["height"]) * scale), round(int(meta["width"]) * scale)
    poses = orbit_poses(np.array(meta["poses"], dtype=np.float64).reshape(-1, 4, 4), frames)
    rays = camera_rays(poses, float(meta["focal"]) * scale, float(meta["cx"]) * scale, float(meta["cy"]) * scale,
                       height, width)
    views = map_batches(lambda code: loaded.model.decode(rays.reshape(1, -1, 6), code), phi_hat).clamp(0, 1)
    images = [Image.fromarray(v, "RGB") for v in to_uint8(views.reshape(frames, height, width, 3).numpy())]
    with writing(output) as tmp:
        if suffix == ".gif":
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=120, loop=0)
        else:
            columns = min(GRID_COLUMNS, frames)
            rows = -(-frames // columns)
            grid = Image.new("RGB", (columns * width, rows * height), (255, 255, 255))
            for k, image in enumerate(images):
                grid.paste(image, ((k % columns) * width, (k // columns) * height))
            grid.save(tmp, format="PNG")
    return output
