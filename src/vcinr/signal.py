"""The one data type the modality-agnostic core knows about.

Every modality reader turns a file into a :class:`Signal`: features sampled on a regular
grid (``features[..., c]``) together with the coordinates of every grid point
(``coords[..., k]``).  The core (patching, INR, meta-learning, codec) only ever sees these
two arrays; ``meta`` is opaque to it and is handed back to the modality writer so it can
restore the original file (sample rate, frame rate, dtype, value range, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from vcinr.errors import InputError

# The most grid points vcinr reads, encodes or decodes (four 4K frames, 11 min of 48 kHz
# audio): about 0.5 GB of float32 RGB features, so a forged header or a small file that
# claims a huge grid (a decompression bomb) cannot make it allocate far more.
MAX_POINTS = 1 << 25


@dataclass
class Signal:
    """Coordinates → features on a grid.

    Attributes:
        features: float32 tensor of shape ``(*grid, out_dim)``, values scaled to the range
            the modality documents (``[0, 1]`` for images, voxels and normalised fields).
        coords: float32 tensor of shape ``(*grid, in_dim)``.
        modality: name of the modality that produced the signal (``"image"``, ...).
        meta: whatever the modality writer needs to restore the file exactly.
    """

    features: torch.Tensor
    coords: torch.Tensor
    modality: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.features.shape[:-1] != self.coords.shape[:-1]:
            raise InputError(
                f"features grid {tuple(self.features.shape[:-1])} does not match "
                f"coords grid {tuple(self.coords.shape[:-1])}"
            )
        if self.features.numel() == 0:
            raise InputError("the signal is empty")
        if not all_finite(self.features):
            raise InputError("the signal contains NaN or infinite values")

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(self.features.shape[:-1])

    @property
    def in_dim(self) -> int:
        return self.coords.shape[-1]

    @property
    def out_dim(self) -> int:
        return self.features.shape[-1]

    @property
    def num_points(self) -> int:
        """Number of grid points (pixels, samples, voxels): the denominator of bpp."""
        n = 1
        for s in self.grid_shape:
            n *= s
        return n


def all_finite(values: torch.Tensor, chunk: int = 1 << 20) -> bool:
    """``torch.isfinite(values).all()``, a chunk at a time.

    ``isfinite`` of a whole tensor makes temporaries of about 1.7× its size (0.66 GB for a
    decoded grid at ``MAX_POINTS``, the largest single term of the decoder's peak memory).
    """
    flat = values.reshape(-1)
    return all(bool(torch.isfinite(flat[start : start + chunk]).all()) for start in range(0, flat.numel(), chunk))


def grid_coordinates(shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    """Regular grid of coordinates in ``[low, high]`` along every axis.

    Returns a float32 tensor of shape ``(*shape, len(shape))``; axis ``k`` of the grid maps
    to coordinate ``k``.  An axis of length 1 sits at ``low``.
    """
    axes = [
        torch.linspace(low, high, n) if n > 1 else torch.full((1,), float(low)) for n in shape
    ]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh, dim=-1).to(torch.float32)
