"""What every modality provides: read a file into a Signal, write a Signal back to a file, and
what the rest of vcinr must know about it (rate unit, quality, standard codecs, containers).

A new modality is a subclass registered with :func:`vcinr.modalities.register_modality`;
the pipeline, datasets of its files and the eval harness then take it as it is
(``tests/test_new_modality.py`` defines one in the test file).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from vcinr.modalities.datasets import Batch, DataKind, Source, find_files, split_units
from vcinr.signal import Signal


class SkipFile(Exception):
    """A file of a training set that gives no item (speech shorter than the clip); datasets count and report it."""


class Modality(ABC):
    """A kind of data and its coordinate conventions (paper appendix A).

    Attributes:
        name: registry name, stored in model configs and bitstreams.
        suffixes: lower-case file suffixes this modality reads, e.g. ``(".png", ".jpg")``.
        write_suffixes: the subset of suffixes it can also write (a decoder refuses others).
        coord_range: ``(low, high)`` of the regular coordinate grid that patches of this
            modality use; ``None`` for modalities whose coordinates are not a regular grid
            (the sphere), which therefore cannot be patched.
        loss: the name of its :class:`~vcinr.meta.losses.Loss`: ``"mse"`` (scored by PSNR) or
            ``"bce"`` (binary occupancy, scored by accuracy).
        in_dim: number of coordinate dimensions; ``None`` where it depends on the data (the
            generic ``array`` modality has one coordinate per array axis: use ``Signal.in_dim``).
        directory: items are folders rather than files (SRN scenes), so no suffix applies.
        snr_centre: the feature value of silence, for signal-to-noise ratios beside PSNR
            (audio); ``None`` where an SNR would mean nothing.
        codecs: the standard codecs it is compared with (names in
            :mod:`vcinr.evaluate.baselines`); the first is the anchor of BD-rates.
        strong_codecs: the strongest of :attr:`codecs`, which a result is shown beside
            (``vcinr demo``: each quality level beside the best of them at about its rate).
        dataset_options: the ``data.options`` a training set of its files takes (``data.kind``
            = its name, unless it lists kinds of its own: :meth:`data_kinds`), with their defaults.
    """

    name: str
    suffixes: tuple[str, ...]
    write_suffixes: tuple[str, ...]
    coord_range: tuple[float, float] | None
    loss: str = "mse"
    in_dim: int | None
    directory: bool = False
    snr_centre: float | None = None
    codecs: tuple[str, ...] = ()
    strong_codecs: tuple[str, ...] = ()
    dataset_options: Mapping[str, Any] = MappingProxyType({})

    @abstractmethod
    def read(self, path: Path) -> Signal:
        """Read ``path``; raise :class:`vcinr.errors.InputError` with one line if it cannot."""

    @abstractmethod
    def write(self, signal: Signal, path: Path) -> None:
        """Write ``signal`` (features possibly reconstructed) in the format of ``signal.meta``."""

    def coords_from_meta(self, meta: dict, grid: tuple[int, ...]) -> torch.Tensor | None:
        """Coordinates a signal carries in its ``meta`` (a scene's cameras), or ``None``.

        ``None`` (every grid modality) means the coordinates follow from the grid alone, so a
        decoder takes them from the model; otherwise they are part of the signal.
        """
        return None

    def size_text(self, grid: tuple[int, ...]) -> str:
        """A grid's size for messages, as tools for this kind of data write it."""
        return "×".join(str(n) for n in grid)

    def data_kinds(self) -> list[DataKind]:
        """The training-set layouts (``data.kind``) of its data; by default its files under its own name."""
        return [] if self.directory else [FileKind(self)]

    def check_dataset_options(self, options: dict[str, Any]) -> None:
        """Refuse, in one line, :attr:`dataset_options` values (defaults filled in) that make no sense."""

    def dataset_signals(self, path: Path, options: dict[str, Any]) -> list[Signal]:
        """The items one file of a training set gives, equally shaped, given the data section's options
        (:attr:`dataset_options` with the defaults filled in); raises :class:`SkipFile` for none.

        By default the file as read, whole.
        """
        return [self.read(path)]

    def duration(self, meta: dict, grid: tuple[int, ...]) -> float | None:
        """Seconds a signal lasts where its rate is given in kbps (audio); ``None``: rates in bits per point."""
        return None

    def unpack(self, path: Path, folder: Path, limit: int | None) -> list[Path] | None:
        """Single files of this modality written into ``folder`` from a dataset container at ``path``
        (at most ``limit``), so every codec of an evaluation sees the same files; ``None``: not a container."""
        return None


class FileKind(DataKind):
    """A modality's files below ``path``, split by sorted name, each giving the items the modality reads from it."""

    def __init__(self, modality: Modality):
        self.name, self.modality, self._modality = modality.name, modality.name, modality
        self.options = modality.dataset_options

    def check_options(self, options: dict[str, Any], patch: list[int] | None) -> None:
        self._modality.check_dataset_options(options)

    def units(self, source: Source, root: Path, split: str) -> list[Path]:
        files = find_files(root, self._modality.suffixes, self.modality)
        return split_units(files, source, split, f"{self.modality} files")

    def load(self, source: Source, unit: Path, split: str, rng: np.random.Generator) -> Batch:
        signals = self._modality.dataset_signals(unit, source.options)
        return Batch(torch.stack([s.features for s in signals]), signals[0].coords)
