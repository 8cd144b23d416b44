"""What the meta-learner consumes: equally shaped items sharing one coordinate grid, whatever the modality.

:class:`ItemSet` lives here, in the modality-agnostic core, rather than beside the loaders
that fill it (:mod:`vcinr.data`): meta-training, evaluation and codec fitting only need the
tensors, so the meta-learning package never imports data or modality code
(tests/test_layout.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class ItemSet:
    """Equally shaped items sharing one coordinate grid: what the meta-learner consumes.

    Items with coordinates of their own (scenes: camera rays) have per-item ``coords``
    ``(num_items, *item_grid, in_dim)``; ``query_*`` are then the points evaluation scores
    instead of the ones adapted on (held-out views), ``observation`` the operator between
    network and features and ``max_points`` the rays per item of an inner-loop step (see
    :class:`vcinr.meta.model.ItemSpec`).

    Patched items remember where they came from, so quality can be measured per whole signal
    (one MSE over every point of a file) rather than as a mean over patches, which favours
    flat patches: ``file_index`` gives each item's signal (``None``: every item is a signal of
    its own) and ``point_mask`` marks the points of each item that lie inside its signal
    (``None``: all of them; ``False`` on the edge padding of :func:`vcinr.patching.split_patches`).
    A patched test split holds whole signals only.
    """

    features: torch.Tensor  # (num_items, *item_grid, out_dim) float32
    coords: torch.Tensor  # (*item_grid, in_dim) float32, shared by all items (or per item)
    modality: str
    query_features: torch.Tensor | None = None
    query_coords: torch.Tensor | None = None
    observation: dict[str, Any] | None = None
    max_points: int | None = None
    file_index: torch.Tensor | None = None  # (num_items,) int64, non-decreasing within a split
    point_mask: torch.Tensor | None = None  # (num_items, *item_grid) bool

    def files(self) -> torch.Tensor:
        """Each item's signal index ``(num_items,)``."""
        if self.file_index is not None:
            return self.file_index
        return torch.arange(self.features.shape[0])

    @property
    def num_files(self) -> int:
        return int(self.files().max()) + 1 if self.features.shape[0] else 0


def flat_items(items: ItemSet, query: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates ``(N, in_dim)`` and features ``(num_items, N, out_dim)`` with the grid flattened.

    Per-item coordinates (scenes) stay per item, ``(num_items, N, in_dim)``; ``query`` gives
    the items' held-out query points instead.
    """
    coords, features = (items.query_coords, items.query_features) if query else (items.coords, items.features)
    if coords.dim() == features.dim():
        coords = coords.reshape(features.shape[0], -1, coords.shape[-1])
    else:
        coords = coords.reshape(-1, coords.shape[-1])
    return coords, features.reshape(features.shape[0], -1, features.shape[-1])


def whole_signals(items: ItemSet, max_items: int) -> int:
    """How many leading items make up whole signals, about ``max_items`` of them (at least one signal).

    Patched signals are evaluated whole, never cut: the count stops at the last signal that
    ends within ``max_items`` items.
    """
    files = items.files()
    if files.numel() == 0:
        return 0
    if max_items >= files.numel():
        return int(files.numel())
    ends = torch.nonzero(files[1:] != files[:-1]).flatten() + 1  # where a new signal starts
    ends = torch.cat([ends, torch.tensor([files.numel()])])
    within = ends[ends <= max_items]
    return int(within[-1]) if within.numel() else int(ends[0])
