"""Observation operators: what lies between the INR's output and the features it is scored on.

For grid modalities the INR's output at a coordinate *is* the feature there.  A radiance
field (NeRF, Mildenhall et al., 2020; SRN Cars in the paper's Table 1) is only ever seen
through a camera: an item's coordinates are rays, the field is queried at points along each
ray, and the pixel is the alpha-composite of the colours weighted by density.  Such an
operator is attached to :class:`vcinr.meta.metasgd.MetaINR`, which then differentiates the
inner loop through it with autograd instead of its hand-written SIREN backward.

The operator knows nothing about cameras or files — only rays ``(origin, unit direction)``
and the near/far bounds between which the scene lies — so the core stays modality-agnostic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vcinr.inr import noise

Field = Callable[[torch.Tensor], torch.Tensor]
# Rays rendered at once per item without autograd (decoding, evaluation): keeps the points of a
# chunk near 2**16 per item, i.e. activations of a few MiB.
CHUNK_POINTS = 1 << 16


class VolumeRenderer(nn.Module):
    """Differentiable volume rendering of rays through a density + colour field.

    Each ray ``r(t) = o + t d`` is cut into ``samples`` equal bins between ``near`` and
    ``far``; the field is queried at one point per bin — a uniformly random one in training
    (stratified sampling), the bin's midpoint otherwise, so decoding is deterministic.  The
    field's four outputs are density (``softplus(raw + density_shift)``, in units of one
    over the bin length, so the initial field is nearly transparent) and colour
    (``sigmoid``); pixels are composited over a constant ``background`` (white, as SRN Cars).

    Args:
        samples: points per ray.
        near, far: distances along the (unit) ray direction that bound the scene.
        view_dirs: also feed the ray direction to the field (NeRF's view dependence).
        background: value of rays that hit nothing.
        density_shift: added to the raw density output before the softplus.
    """

    kind = "volume"
    field_out_dim = 4  # density, red, green, blue

    def __init__(self, samples: int = 32, near: float = 0.8, far: float = 1.8, view_dirs: bool = False,
                 background: float = 1.0, density_shift: float = -4.0):
        super().__init__()
        if samples < 1 or not 0.0 <= near < far:
            raise ValueError(f"volume rendering needs samples >= 1 and 0 <= near < far, got {samples}, {near}, {far}")
        self.samples, self.near, self.far, self.view_dirs = int(samples), float(near), float(far), bool(view_dirs)
        self.background, self.density_shift = float(background), float(density_shift)

    @property
    def field_in_dim(self) -> int:
        return 6 if self.view_dirs else 3

    @property
    def expansion(self) -> int:
        """Field queries per coordinate (ray)."""
        return self.samples

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "samples": self.samples, "near": self.near, "far": self.far,
                "view_dirs": self.view_dirs, "background": self.background, "density_shift": self.density_shift}

    def forward(self, field: Field, rays: torch.Tensor, stochastic: bool = False) -> torch.Tensor:
        """Pixels ``(B, R, 3)`` of rays ``(R, 6)`` (shared) or ``(B, R, 6)`` through ``field``.

        ``field`` maps points ``(P, in)`` or ``(B, P, in)`` to raw outputs ``(B, P, 4)``.
        """
        chunk = max(1, CHUNK_POINTS // self.samples)
        if torch.is_grad_enabled() or rays.shape[-2] <= chunk:
            return self._render(field, rays, stochastic)
        return torch.cat([self._render(field, rays[..., start : start + chunk, :], stochastic)
                          for start in range(0, rays.shape[-2], chunk)], dim=-2)

    def _render(self, field: Field, rays: torch.Tensor, stochastic: bool) -> torch.Tensor:
        origins, directions = rays[..., :3], rays[..., 3:6]
        bin_length = (self.far - self.near) / self.samples
        offsets = (torch.rand(*rays.shape[:-1], self.samples, generator=noise.generator(), device=rays.device,
                              dtype=rays.dtype) if stochastic
                   else torch.full((self.samples,), 0.5, device=rays.device, dtype=rays.dtype))
        t = self.near + bin_length * (torch.arange(self.samples, device=rays.device, dtype=rays.dtype) + offsets)
        if t.dim() == 1:
            t = t.expand(*rays.shape[:-1], self.samples)
        points = origins.unsqueeze(-2) + t.unsqueeze(-1) * directions.unsqueeze(-2)  # (..., R, S, 3)
        if self.view_dirs:
            points = torch.cat([points, directions.unsqueeze(-2).expand_as(points)], dim=-1)
        raw = field(points.flatten(-3, -2))
        raw = raw.reshape(*raw.shape[:-2], rays.shape[-2], self.samples, self.field_out_dim)
        # Bin lengths: gaps between consecutive samples, the last one reaching ``far``.
        deltas = torch.cat([t[..., 1:] - t[..., :-1], self.far - t[..., -1:]], dim=-1) / bin_length
        optical = F.softplus(raw[..., 0] + self.density_shift) * deltas  # σ·δ, broadcast over items
        alpha = -torch.expm1(-optical)
        # transmittance before each sample: exp(-Σ_{j<i} σ_j δ_j)
        before = torch.exp(-(torch.cumsum(optical, dim=-1) - optical))
        weights = alpha * before
        colour = torch.sigmoid(raw[..., 1:4])
        pixels = (weights.unsqueeze(-1) * colour).sum(dim=-2)
        remaining = torch.exp(-optical.sum(dim=-1, keepdim=True))
        return pixels + remaining * self.background


def build_observation(settings: dict[str, Any] | None) -> VolumeRenderer | None:
    """The operator a model's :class:`~vcinr.meta.model.ItemSpec` names (``None``: the identity)."""
    if settings is None:
        return None
    options = dict(settings)
    kind = options.pop("kind", None)
    if kind != VolumeRenderer.kind:
        raise ValueError(f"unknown observation kind {kind!r}")
    return VolumeRenderer(**options)
