"""Split an N-d grid of features into equal patches and merge them back exactly.

Large signals (Kodak images, 3-second audio clips, videos) are compressed as many small
patches that share one meta-learned INR, as in COIN++/MSCN: every patch is treated as a small
signal of its own.  A grid that is not a multiple of the patch size is padded at its far end
by repeating the edge values (a smooth continuation that is cheap for an INR to fit, unlike
zeros), and :func:`merge_patches` crops that padding again, so
``merge_patches(split_patches(x, p), x.shape[:-1], p)`` returns ``x`` exactly.

Patches are ordered row-major over the patch grid (the last grid axis varies fastest).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch

from vcinr.errors import ConfigError, InputError


def _check(grid_shape: Sequence[int], patch: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    try:
        grid_shape, patch = tuple(map(operator.index, grid_shape)), tuple(map(operator.index, patch))
    except TypeError:
        raise ConfigError(f"patch sizes must be integers, got {list(patch)}") from None
    if not patch or any(p <= 0 for p in patch):
        raise ConfigError(f"patch sizes must be positive integers, got {list(patch)}")
    if len(patch) != len(grid_shape):
        raise ConfigError(
            f"patch {list(patch)} has {len(patch)} dims but the signal grid {list(grid_shape)} has {len(grid_shape)}"
        )
    if any(n <= 0 for n in grid_shape):
        raise InputError(f"cannot patch an empty grid {list(grid_shape)}")
    return grid_shape, patch


def patch_grid(grid_shape: Sequence[int], patch: Sequence[int]) -> tuple[int, ...]:
    """Number of patches along each axis (the grid rounded up to whole patches)."""
    grid_shape, patch = _check(grid_shape, patch)
    return tuple(-(-n // p) for n, p in zip(grid_shape, patch))


def patch_count(grid_shape: Sequence[int], patch: Sequence[int]) -> int:
    """Total number of patches :func:`split_patches` produces for ``grid_shape``."""
    return math.prod(patch_grid(grid_shape, patch))


def split_patches(grid: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    """``(*grid, C)`` → ``(P, *patch, C)``, edge-replicating where the grid is not a multiple."""
    grid_shape, patch = _check(grid.shape[:-1], patch)
    counts = patch_grid(grid_shape, patch)
    padded = grid
    for axis, (n, p, k) in enumerate(zip(grid_shape, patch, counts)):
        if n != p * k:  # index n-1 repeated into the padding
            index = torch.arange(p * k, device=grid.device).clamp_(max=n - 1)
            padded = padded.index_select(axis, index)
    d = len(patch)
    # (k0, p0, k1, p1, ..., C) → (k0, k1, ..., p0, p1, ..., C)
    blocks = padded.reshape(*[s for kp in zip(counts, patch) for s in kp], grid.shape[-1])
    order = [2 * i for i in range(d)] + [2 * i + 1 for i in range(d)] + [2 * d]
    return blocks.permute(order).reshape(-1, *patch, grid.shape[-1])


def patch_mask(grid_shape: Sequence[int], patch: Sequence[int]) -> torch.Tensor:
    """``(P, *patch)`` booleans: ``True`` where a patch point lies in the grid, ``False`` on padding.

    Quality over a whole signal must count each real point once and no padded one; the
    padding repeats edge values, so it cannot be told apart from the features themselves.
    """
    grid_shape, patch = _check(grid_shape, patch)
    counts = patch_grid(grid_shape, patch)
    inside = torch.zeros(*[k * p for k, p in zip(counts, patch)], 1, dtype=torch.bool)
    inside[tuple(slice(0, n) for n in grid_shape)] = True
    return split_patches(inside, patch)[..., 0]


def merge_patches(patches: torch.Tensor, grid_shape: Sequence[int], patch: Sequence[int] | None = None) -> torch.Tensor:
    """Inverse of :func:`split_patches`: ``(P, *patch, C)`` → ``(*grid_shape, C)``.

    ``patch`` defaults to the patches' own shape; giving it checks that the two agree.
    """
    patch = tuple(patches.shape[1:-1]) if patch is None else tuple(patch)
    grid_shape, patch = _check(grid_shape, patch)
    counts = patch_grid(grid_shape, patch)
    expected = (math.prod(counts), *patch)
    if tuple(patches.shape[:-1]) != expected:
        raise InputError(
            f"expected patches of shape {list(expected)} + [C] for grid {list(grid_shape)}, "
            f"got {list(patches.shape)}"
        )
    d = len(patch)
    blocks = patches.reshape(*counts, *patch, patches.shape[-1])
    # (k0, k1, ..., p0, p1, ..., C) → (k0, p0, k1, p1, ..., C)
    order = [i for pair in zip(range(d), range(d, 2 * d)) for i in pair] + [2 * d]
    padded = blocks.permute(order).reshape(*[k * p for k, p in zip(counts, patch)], patches.shape[-1])
    return padded[tuple(slice(0, n) for n in grid_shape)].contiguous()


def merge_target(grid_shape: Sequence[int], patch: Sequence[int], channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An empty padded grid and a view of it as blocks ``(k0, k1, ..., *patch, C)``, for merging as patches arrive.

    Writing patch ``i`` to ``blocks[unravel_index(i, counts)]`` gives what :func:`merge_patches`
    gives, without holding every patch and the merged grid at once: a decoder writes each
    batch straight into its output (at the size limit that halves its memory).  Crop the
    padded grid to ``grid_shape`` afterwards.
    """
    grid_shape, patch = _check(grid_shape, patch)
    counts = patch_grid(grid_shape, patch)
    padded = torch.empty(*[k * p for k, p in zip(counts, patch)], channels)
    d = len(patch)
    interleaved = padded.view(*[n for pair in zip(counts, patch) for n in pair], channels)  # (k0, p0, k1, p1, ..., C)
    return padded, interleaved.permute(*range(0, 2 * d, 2), *range(1, 2 * d, 2), 2 * d)


def smooth_seams_(grid: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    """A deblocking filter: soften the step that independent patches leave at every boundary.

    Patches are fitted independently, so their errors differ and meet as a step at each
    boundary: the visible grid of a patched image, a click between audio patches.  Along each
    axis, at each boundary between points ``p1 p0 | q0 q1``, the *excess* jump is the step
    ``q0 − p0`` minus the mean slope on either side, ``((p0 − p1) + (q1 − q0)) / 2``; a quarter
    of it moves ``p0`` up and ``q0`` down.  Smooth content is left as it was, so only the
    seam changes; a true edge on a boundary keeps three quarters of its excess.  On held-out
    Kodak this gains about 0.15 dB (docs/codec.md, "Seams"); wider or gated variants did worse.
    ``grid`` is ``(*grid_shape, C)``; axes whose patch is shorter than 2 points, or that hold
    one patch, are left alone.  Works in place (a decoder at the size limit has no room for a
    copy; only the boundary slices are read out) and returns ``grid``.
    """
    for axis, p in enumerate(patch):
        n = grid.shape[axis]
        if p < 2 or n <= p:
            continue
        boundary = torch.arange(p, n - 1, p, device=grid.device)  # index of q0; q1 = boundary + 1 exists
        if boundary.numel() == 0:
            continue
        p1, p0, q0, q1 = (grid.index_select(axis, boundary + k) for k in (-2, -1, 0, 1))
        excess = (q0 - p0) - ((p0 - p1) + (q1 - q0)) / 2
        grid.index_copy_(axis, boundary - 1, p0 + excess / 4)
        grid.index_copy_(axis, boundary, q0 - excess / 4)
    return grid
