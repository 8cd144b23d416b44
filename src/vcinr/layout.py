"""How a signal's grid is cut into the items its model codes, worked out in one place.

The encoder (:func:`vcinr.pipeline.encode_signal`) and both halves of the decoder ask
:func:`item_layout`, so they cannot disagree about which signals are patched, which are one
item and where the coordinates come from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from vcinr.codec.bitstream import Header
from vcinr.codec.levels import QualityLevel
from vcinr.errors import BitstreamError, InputError
from vcinr.meta.model import LoadedModel
from vcinr.modalities import get_modality


def _item_coords(loaded: LoadedModel, level: QualityLevel) -> torch.Tensor:
    """Coordinates of one item: a patch grid in ``coord_range``, or the training grid itself."""
    spec = loaded.spec
    coords = level.coords
    if coords.shape != (math.prod(spec.item_shape), spec.in_dim):
        raise BitstreamError(f"codec {level.info.stem} holds coordinates of shape {tuple(coords.shape)}, "
                             f"not the model's item shape {list(spec.item_shape)}")
    return coords


@dataclass(frozen=True)
class ItemLayout:
    """How a signal's grid is cut into the items its model codes; encoder and decoder ask :func:`item_layout`.

    A signal that carries its own coordinates (a scene's rays, in its meta) is one item with
    those coordinates; a model trained without patches (``coord_range`` ``None``: the sphere)
    codes one item of exactly its training grid; any other model codes edge-padded patches of
    ``item_shape``, all with the same coordinates.
    """

    item_shape: tuple[int, ...]
    coords: torch.Tensor  # one item's (points, in_dim), or (1, points, in_dim) when carried
    carried: bool
    patched: bool


def item_layout(loaded: LoadedModel, level: QualityLevel, grid: tuple[int, ...], meta: dict) -> ItemLayout:
    """The :class:`ItemLayout` of a ``grid`` with ``meta``; raises ``InputError`` on bad carried coordinates."""
    spec = loaded.spec
    carried = get_modality(spec.modality).coords_from_meta(meta, grid)
    if carried is not None:
        return ItemLayout(grid, carried.reshape(1, -1, spec.in_dim), carried=True, patched=False)
    return ItemLayout(tuple(spec.item_shape), _item_coords(loaded, level), carried=False,
                      patched=spec.coord_range is not None)


def bitstream_layout(loaded: LoadedModel, level: QualityLevel, header: Header, name: str) -> ItemLayout:
    """:func:`item_layout` of a bitstream's grid, whose meta is the file's to answer for."""
    try:
        return item_layout(loaded, level, tuple(header.grid_shape), header.meta)
    except InputError as exc:
        raise BitstreamError(f"{name}: {exc}") from None


__all__ = ["ItemLayout", "bitstream_layout", "item_layout"]
