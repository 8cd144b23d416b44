"""Training and evaluation sets: equally shaped items in memory, whatever the modality.

Meta-learning batches many small signals that share one coordinate grid, so every data source
is reduced to an :class:`~vcinr.meta.items.ItemSet` (the meta-learner's own input type):
``features (num_items, *item_grid, out_dim)`` plus one ``coords (*item_grid, in_dim)`` tensor.
With ``patch`` set, signals are cut into patches (:mod:`vcinr.patching`) and every patch is
treated as a small signal of its own with a fresh coordinate grid over the patch in the
modality's coordinate range (as COIN++ does for Kodak); without it, whole signals are the
items and must all have the same shape.

Scenes (SRN layout, :mod:`vcinr.modalities.scene`) are items whose coordinates are their own —
every pixel's camera ray — so their kind loads them whole and their :class:`ItemSet` holds
per-item ``coords`` and, for the test split, the held-out ``query`` views that evaluation
renders (novel views).

Every kind (``data.kind``) is a registered modality's (:data:`vcinr.modalities.DATA_KINDS`,
see :mod:`vcinr.modalities.datasets`): how its source splits into units, what whole signals
each unit gives and which options it takes.  This module only assembles them — split, cap,
patch, mix — the same way for every kind.

Splits: CIFAR-10 has its own train/test split; scenes use ``train``/``test`` (or ``*_train``/
``*_test``) sub-folders when there are such.  Every other source is split by sorted name —
files for a directory, items of the file for a single multi-item file (ERA5 fields, an array
with a leading item axis, the scale-augmented copies of a single voxel shape) — with the last
``test_fraction`` going to test.  ``max_items`` caps a split with a seeded random subset.
Loading is CPU-only and deterministic given ``seed``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vcinr.errors import ConfigError, InputError
from vcinr.limits import MAX_COORDINATE
from vcinr.meta.items import ItemSet
from vcinr.modalities import DATA_KINDS, get_modality
from vcinr.modalities.base import SkipFile
from vcinr.modalities.datasets import DataKind, option_integer
from vcinr.patching import patch_mask, split_patches
from vcinr.signal import grid_coordinates

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """The ``data`` section of a config; field names are the YAML keys.

    ``options`` per kind, with the defaults of the kind (:class:`~vcinr.modalities.datasets.DataKind`
    ``options``; for a modality's own files its ``dataset_options``):

    * images: ``random_crops_per_image`` — for the train split, take this many random
      ``patch``-sized crops per image instead of tiling it (paper: Div2K → Kodak).
    * audio: ``clip_seconds`` — the first seconds of each file (paper: 3 s); shorter files are
      skipped with a warning; ``clips_per_file`` — up to this many consecutive clips of that
      length from each file (default 1, the paper's; more is more training data per utterance).
    * video: ``frames`` per clip, ``size`` (int or [H, W]; centre-crop to that aspect, then
      resize, as the paper does for UCF-101), ``clips_per_video`` consecutive clips per file.
    * scenes: ``views`` — use the first views of each scene (default all; all scenes need as
      many); ``size`` — resize views to ``size`` × ``size``; ``query_views`` — the last views of
      every *test* scene are held out of the inner loop and scored (novel views);
      ``rays_per_item`` — random rays per scene in each inner-loop step; ``samples``, ``near``,
      ``far``, ``view_dirs`` — volume rendering (:class:`vcinr.inr.render.VolumeRenderer`).
    * voxels: ``resolution`` — PLY meshes are voxelised at it (default 32) and grids resampled
      to it when given; ``threshold`` — occupancy of scalar volumes is ``value > threshold``;
      ``scale_augment`` — number of extra copies per shape, each scaled per axis by a random
      factor in [0.75, 1.25] (the paper's ShapeNet augmentation).

    ``patch_range`` ``[low, high]``: the coordinate range of one patch along every axis (default:
    the modality's ``coord_range``).  Shorter patches over a proportionally shorter range keep
    the coordinate spacing of a model trained on longer ones, so it can warm-start them (e.g.
    200-sample speech patches over ``[-2.494, 2.494]`` sample like 400 over ``[-5, 5]``).

    ``mix`` lists further data sections (same keys, no nested ``mix``) whose items are appended
    to this one's, each split and capped by its own settings; they must give items of the same
    modality, shape and coordinates — e.g. CIFAR-10 images plus 32×32 Kodak patches for one
    image model.  A mixed source with ``test_fraction: 0`` only adds training items.
    """

    kind: str
    path: str
    patch: list[int] | None = None
    patch_range: list[float] | None = None
    max_items: int | None = None
    test_fraction: float = 0.2
    seed: int = 0
    options: dict = field(default_factory=dict)
    mix: list[dict] | None = None

    def __post_init__(self) -> None:
        kind = _kind(self.kind)
        known = kind.options
        if self.patch is not None:
            if not isinstance(self.patch, (list, tuple)):
                raise ConfigError(f"data.patch must be a list of sizes, got {self.patch!r}")
            self.patch = [option_integer(f"data.patch[{i}]", p, minimum=1) for i, p in enumerate(self.patch)]
            if not self.patch:
                raise ConfigError("data.patch must list at least one size (or be omitted)")
        if self.patch_range is not None:
            self.patch_range = _patch_range(self.patch_range, self.patch)
        if self.max_items is not None:
            self.max_items = option_integer("data.max_items", self.max_items, minimum=1)
        fraction = self.test_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
            raise ConfigError(f"data.test_fraction must be in [0, 1], got {self.test_fraction}")
        self.seed = option_integer("data.seed", self.seed, minimum=0)
        if not isinstance(self.options, dict):
            raise ConfigError(f"data.options must be a mapping, got {self.options!r}")
        unknown = sorted(set(self.options) - set(known))
        if unknown:
            names = ", ".join(known) or "none"
            raise ConfigError(f"unknown data.options {', '.join(unknown)} for kind {self.kind} (known: {names})")
        self.options = {**known, **self.options}
        kind.check_options(self.options, self.patch)
        if self.mix is not None:
            self.mix = [_mixed_source(i, source) for i, source in enumerate(self.mix)]


def _patch_range(span: Any, patch: list[int] | None) -> list[float]:
    """``data.patch_range`` checked: two finite numbers, low < high, and only with ``data.patch``."""
    if patch is None:
        raise ConfigError("data.patch_range needs data.patch (it is the coordinate range of one patch)")
    if (not isinstance(span, (list, tuple)) or len(span) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= MAX_COORDINATE
                       for v in span)
            or not span[0] < span[1]):
        raise ConfigError(f"data.patch_range must be [low, high] with low < high, each within "
                          f"±{MAX_COORDINATE:g} (what a model records), got {span!r}")
    return [float(v) for v in span]


def _kind(name: str) -> DataKind:
    """The registered data kind called ``name``."""
    if name not in DATA_KINDS:
        raise ConfigError(f"data.kind must be one of {', '.join(DATA_KINDS)}, got {name!r}")
    return DATA_KINDS[name]


def _mixed_source(index: int, source: Any) -> dict:
    """Validate one ``data.mix`` entry; returned in full (defaults filled in) so configs record it."""
    where = f"data.mix[{index}]"
    if not isinstance(source, dict):
        raise ConfigError(f"{where} must be a data section (a mapping), got {source!r}")
    if source.get("mix"):
        raise ConfigError(f"{where}: a mixed source cannot mix in further sources")
    unknown = sorted(set(source) - {f.name for f in fields(DataConfig)})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    try:
        return asdict(DataConfig(**source))
    except TypeError as exc:  # kind or path missing
        raise ConfigError(f"{where}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


# --- assembly ------------------------------------------------------------------------------


def _patch_batch(features: torch.Tensor, patch: tuple[int, ...]) -> torch.Tensor:
    """``(k, *grid, C)`` → ``(k * P, *patch, C)``: item-major, patches row-major within an item."""
    k, channels = features.shape[0], features.shape[-1]
    # fold the item axis into the channels so one split handles the whole batch
    folded = features.movedim(0, -2).reshape(*features.shape[1:-1], k * channels)
    patches = split_patches(folded, patch)
    patches = patches.reshape(*patches.shape[:-1], k, channels).movedim(-2, 0)
    return patches.reshape(-1, *patch, channels)


def load_items(cfg: DataConfig, split: str) -> ItemSet:
    """Load the ``split`` ("train" or "test") items that ``cfg`` describes."""
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    kind = DATA_KINDS[cfg.kind]
    modality = get_modality(kind.modality)
    patch = tuple(cfg.patch) if cfg.patch else None
    if patch and modality.coord_range is None:
        raise ConfigError(
            f"{cfg.kind} data cannot be patched (its coordinates are not a regular grid); drop data.patch"
        )
    root = Path(cfg.path)
    if not root.exists():
        raise InputError(f"{root}: no such file or directory")
    whole = kind.whole_items(cfg, split)
    if whole is not None:  # items with coordinates of their own (scenes): loaded whole by their kind
        return ItemSet(whole.features, whole.coords, modality.name, whole.query_features, whole.query_coords,
                       whole.observation, whole.max_points)

    kind.forget()  # files may have changed since
    units = kind.units(cfg, root, split)
    order = np.random.default_rng(cfg.seed).permutation(len(units)) if cfg.max_items else range(len(units))
    chunks: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    signals: list[int] = []  # signals per chunk (a CIFAR-10 file holds many)
    total = 0
    coords: torch.Tensor | None = None
    skipped: Counter[str] = Counter()
    progress = tqdm(order, desc=f"loading {cfg.kind} {split}", leave=False, disable=True if len(units) < 20 else None)
    for index in progress:
        try:
            batch = kind.load(cfg, units[index], split, np.random.default_rng([cfg.seed, int(index)]))
        except SkipFile as reason:
            skipped[str(reason)] += 1
            continue
        items = _patch_batch(batch.features, patch) if patch else batch.features
        if chunks and items.shape[1:] != chunks[0].shape[1:]:
            raise InputError(_mismatch(cfg, tuple(chunks[0].shape[1:]), tuple(items.shape[1:]), units[index]))
        if patch:  # the same patch layout for each of the unit's signals
            masks.append(patch_mask(batch.features.shape[1:-1], patch).repeat(batch.features.shape[0],
                                                                              *[1] * len(patch)))
        if coords is None:
            coords = batch.coords
        elif not patch and not torch.equal(coords, batch.coords):
            raise InputError(f"{units[index]}: coordinates differ from the other items' (different grids)")
        chunks.append(items)
        signals.append(batch.features.shape[0])
        total += len(items)
        if cfg.max_items and total >= cfg.max_items:
            break
    for reason, count in skipped.items():
        log.warning("%s: skipped %d of %d %s files %s", cfg.path, count, len(units), cfg.kind, reason)
    if not chunks:
        raise InputError(f"{cfg.path}: no usable {split} items")

    features = torch.cat(chunks).contiguous()
    first_signal = np.cumsum([0, *signals[:-1]])
    file_index = torch.cat([int(first) + torch.arange(n).repeat_interleave(len(c) // n)
                            for c, n, first in zip(chunks, signals, first_signal)])
    mask = torch.cat(masks) if patch else None
    if cfg.max_items and len(features) > cfg.max_items:
        rng = np.random.default_rng(cfg.seed)
        if patch and split == "test":
            keep = _whole_signals_subset(file_index, cfg.max_items, rng)
        else:
            keep = torch.from_numpy(np.sort(rng.choice(len(features), cfg.max_items, replace=False)))
        features, file_index = features[keep], torch.unique(file_index[keep], return_inverse=True)[1]
        mask = mask[keep] if mask is not None else None
    if patch:
        coords = grid_coordinates(patch, *patch_coord_range(cfg))
    if mask is not None and bool(mask.all()):
        mask = None
    items = ItemSet(features, coords, modality.name, file_index=file_index if patch else None, point_mask=mask)
    for source in cfg.mix or ():
        if split == "test" and source["test_fraction"] == 0:
            continue  # a training-only source (e.g. extra photos beside the held-out Kodak images)
        items = _append(items, load_items(DataConfig(**source), split), source["path"])
    return items


def patch_coord_range(cfg: DataConfig) -> tuple[float, float]:
    """The coordinate range of one patch of ``cfg``'s items: ``patch_range``, else the modality's."""
    return tuple(cfg.patch_range or get_modality(DATA_KINDS[cfg.kind].modality).coord_range)


def _whole_signals_subset(file_index: torch.Tensor, max_items: int, rng: np.random.Generator) -> torch.Tensor:
    """Sorted indices of the items of random whole signals, at most ``max_items`` items (at least one signal).

    Test signals are scored whole (:mod:`vcinr.meta.quality`), so a capped test split drops
    signals, never single patches of one.
    """
    sizes = torch.bincount(file_index).numpy()
    order = rng.permutation(len(sizes))
    within = np.cumsum(sizes[order]) <= max_items
    chosen = order[: max(1, int(within.sum()))]
    return torch.nonzero(torch.from_numpy(np.isin(file_index.numpy(), chosen))).flatten()


def _append(items: ItemSet, more: ItemSet, where: str) -> ItemSet:
    """``items`` followed by ``more`` (a ``data.mix`` source), which must be interchangeable."""
    if more.modality != items.modality or more.features.shape[1:] != items.features.shape[1:]:
        raise InputError(f"{where}: mixed-in items are {more.modality} {list(more.features.shape[1:])}, but the "
                         f"others are {items.modality} {list(items.features.shape[1:])}")
    if items.observation is not None or more.observation is not None:
        raise InputError(f"{where}: only grid data can be mixed (not scenes)")
    if more.coords.shape != items.coords.shape or not torch.allclose(more.coords, items.coords):
        raise InputError(f"{where}: mixed-in items have other coordinates (set the same data.patch on every source)")
    mask = None
    if items.point_mask is not None or more.point_mask is not None:
        whole = lambda part: part.point_mask if part.point_mask is not None else torch.ones(  # noqa: E731
            part.features.shape[:-1], dtype=torch.bool)
        mask = torch.cat([whole(items), whole(more)])
    file_index = None
    if items.file_index is not None or more.file_index is not None:
        file_index = torch.cat([items.files(), items.num_files + more.files()])
    return ItemSet(torch.cat([items.features, more.features]), items.coords, items.modality,
                   file_index=file_index, point_mask=mask)


def _mismatch(cfg: DataConfig, first: tuple[int, ...], other: tuple[int, ...], unit: Any) -> str:
    where = unit[0] if isinstance(unit, tuple) else unit
    if first[:-1] == other[:-1]:
        return f"{where}: has {other[-1]} channels but earlier items have {first[-1]} (e.g. grayscale mixed with RGB)"
    hint = "" if cfg.patch else "; set data.patch to cut signals into equal patches"
    return f"{where}: item shape {list(other[:-1])} differs from {list(first[:-1])}{hint}"
