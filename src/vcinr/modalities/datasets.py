"""Training sets of a modality's data: the kinds that ``data.kind`` names.

:mod:`vcinr.data` assembles items from every kind the same way — split the source into units,
load each unit into whole signals, patch, cap, mix — so what is particular to one modality's
data sets (CIFAR-10 batches, the fields of one file, scale-augmented shapes, the rows of an
array, random crops) lives with that modality as a :class:`DataKind` it lists in
:meth:`~vcinr.modalities.base.Modality.data_kinds`.  By default that is a
:class:`~vcinr.modalities.base.FileKind` under the modality's own name: its files, each read by
:meth:`~vcinr.modalities.base.Modality.dataset_signals`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np
import torch

from vcinr.errors import ConfigError, InputError
from vcinr.signal import MAX_POINTS, Signal


class Source(Protocol):
    """What a kind reads of a ``data`` section (:class:`vcinr.data.DataConfig`)."""

    path: str
    patch: list[int] | None
    max_items: int | None
    test_fraction: float
    seed: int
    options: dict[str, Any]


@dataclass
class Batch:
    """Whole signals from one unit (a file, a field, a shape copy) before patching."""

    features: torch.Tensor  # (k, *grid, C)
    coords: torch.Tensor  # (*grid, in_dim)


@dataclass
class OwnCoordinateItems:
    """Items whose coordinates are their own (scenes: every pixel's camera ray), loaded whole.

    ``query_*`` are the points evaluation scores instead of the ones adapted on (held-out
    views), ``observation`` the operator between network and features and ``max_points`` the
    points per item of an inner-loop step (see :class:`vcinr.meta.model.ItemSpec`).
    """

    features: torch.Tensor  # (num_items, *item_grid, out_dim)
    coords: torch.Tensor  # (num_items, *item_grid, in_dim)
    query_features: torch.Tensor | None
    query_coords: torch.Tensor | None
    observation: dict[str, Any]
    max_points: int


def split_units(units: Sequence, source: Source, split: str, what: str) -> list:
    """The train (first) or test (last ``test_fraction``) part of ``units``, in order."""
    n = len(units)
    n_test = round(n * source.test_fraction)
    if source.test_fraction > 0:
        n_test = max(n_test, 1)
    part = list(units[: n - n_test] if split == "train" else units[n - n_test :])
    if not part:
        raise InputError(
            f"{source.path}: the {split} split is empty ({n} {what}, test_fraction {source.test_fraction}); "
            "add data or change data.test_fraction"
        )
    return part


def find_files(root: Path, suffixes: Sequence[str], what: str) -> list[Path]:
    """``root`` itself, or every non-hidden file with one of ``suffixes`` below it, sorted."""
    if root.is_file():
        if root.suffix.lower() not in suffixes:
            raise InputError(f"{root}: not a {what} file (expected {', '.join(suffixes)})")
        return [root]
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise InputError(f"{root}: no {what} files ({', '.join(suffixes)}) found")
    return files


def option_integer(name: str, value: Any, minimum: int) -> int:
    """``value`` checked to be an integer ``>= minimum`` (config values arrive untyped from YAML)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_counts(options: Mapping[str, Any], minimum: int, *names: str) -> None:
    """Count options ``names`` (where set) are integers in ``[minimum, MAX_POINTS]``.

    Capped because the loader allocates what they imply before any file is read:
    ``scale_augment: 1e12`` used to build a list of 10^12 units.
    """
    for name in names:
        if options.get(name) is not None:
            value = option_integer(f"data.options.{name}", options[name], minimum)
            if value > MAX_POINTS:
                raise ConfigError(f"data.options.{name} must be at most {MAX_POINTS}, got {value}")


def check_size(options: Mapping[str, Any]) -> None:
    """``options["size"]``: an integer or ``[H, W]``, at most ``MAX_POINTS`` pixels per frame."""
    size = options["size"]
    sizes = size if isinstance(size, (list, tuple)) else [size]
    if len(sizes) not in (1, 2):
        raise ConfigError(f"data.options.size must be an integer or [H, W], got {size!r}")
    for s in sizes:
        option_integer("data.options.size", s, minimum=1)
    if sizes[0] * sizes[-1] > MAX_POINTS:  # an int size means size x size
        raise ConfigError(f"data.options.size must give at most {MAX_POINTS} pixels per frame, got {size!r}")


class DataKind:
    """One layout of training data of one modality (``data.kind: <name>``).

    A kind gives its items one of two ways, and :func:`vcinr.data.load_items` asks in this
    order: :meth:`whole_items` (items with coordinates of their own, e.g. scenes' rays), or,
    where that is ``None``, ``units(source, root, split) -> list`` (the files, fields, ... of
    ``split`` in order: what ``max_items`` samples and loading iterates) and
    ``load(source, unit, split, rng) -> Batch`` (the whole signals of one unit; ``rng`` is
    seeded per unit for random crops), which grid kinds define.

    Attributes:
        name: the ``data.kind`` it answers to.
        modality: the registered modality its items are.
        options: the ``data.options`` it takes, with their defaults (``None``: off unless given).
    """

    name: str
    modality: str
    options: Mapping[str, Any] = MappingProxyType({})

    def check_options(self, options: dict[str, Any], patch: list[int] | None) -> None:
        """Refuse, in one line, options (defaults filled in) that do not make sense for this kind."""

    def forget(self) -> None:
        """Drop files cached between units: a new load may see changed files."""

    def whole_items(self, source: Source, split: str) -> OwnCoordinateItems | None:
        """Items with coordinates of their own, loaded at once; ``None`` (grid data): unit by unit."""
        return None


def consecutive_clips(signal: Signal, length: int, coords: torch.Tensor) -> list[Signal]:
    """The whole clips of ``length`` points along ``signal``'s first axis, in order, each with
    ``coords`` (one clip's grid); a shorter tail is dropped.  Audio and video cut files this way."""
    return [Signal(signal.features[i * length : (i + 1) * length], coords, signal.modality, signal.meta)
            for i in range(signal.grid_shape[0] // length)]
