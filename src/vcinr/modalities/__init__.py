"""Registry of modalities and the two entry points the rest of vcinr uses: read and write.

A file's modality follows from its suffix unless one is named.  Where two modalities share a
suffix the earlier one in :data:`MODALITIES` is the default — ``.npz`` is a sphere field,
``.npy`` a generic array, ``.gif`` a video — and the others must be named explicitly (e.g.
``read_signal("grid.npy", "voxels")``).  A ``scene`` is a folder (SRN layout), never chosen
by suffix: name it.
"""

from __future__ import annotations

import os
from pathlib import Path

from vcinr.errors import ConfigError, InputError
from vcinr.modalities.array import ArrayModality
from vcinr.modalities.audio import AudioModality
from vcinr.modalities.base import Modality
from vcinr.modalities.common import check_suffix
from vcinr.modalities.datasets import DataKind
from vcinr.modalities.image import ImageModality
from vcinr.modalities.scene import SceneModality
from vcinr.modalities.sphere import SphereModality
from vcinr.modalities.video import VideoModality
from vcinr.modalities.voxels import VoxelModality
from vcinr.signal import Signal

MODALITIES: dict[str, Modality] = {}
DATA_KINDS: dict[str, DataKind] = {}  # data.kind -> its layout, from every registered modality's data_kinds()
_BY_SUFFIX: dict[str, Modality] = {}


def register_modality(modality: Modality) -> Modality:
    """Make ``modality`` known to every part of vcinr: reading and writing, datasets, models, bitstreams, eval.

    Its suffixes go to it by default only where no earlier modality has claimed them.
    """
    if modality.name in MODALITIES:
        raise ConfigError(f"a modality called {modality.name!r} is registered already")
    kinds = modality.data_kinds()
    taken = [kind.name for kind in kinds if kind.name in DATA_KINDS]
    if taken:
        raise ConfigError(f"a data kind called {taken[0]!r} is registered already")
    MODALITIES[modality.name] = modality
    DATA_KINDS.update((kind.name, kind) for kind in kinds)
    for suffix in modality.suffixes:
        _BY_SUFFIX.setdefault(suffix, modality)
    return modality


for _modality in (ImageModality(), AudioModality(), VideoModality(), SphereModality(), ArrayModality(),
                  VoxelModality(), SceneModality()):
    register_modality(_modality)


def get_modality(name: str) -> Modality:
    try:
        return MODALITIES[name]
    except KeyError:
        raise ConfigError(f"unknown modality {name!r} (known: {', '.join(MODALITIES)})") from None


def modality_for_path(path: str | Path) -> Modality:
    """The default modality for ``path``'s suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in _BY_SUFFIX:
        raise InputError(f"{path}: unknown format '{suffix or '(no suffix)'}' (known: {', '.join(sorted(_BY_SUFFIX))})")
    return _BY_SUFFIX[suffix]


def read_signal(path: str | Path, modality: str | None = None) -> Signal:
    """Read ``path`` as ``modality`` (default: from the suffix); every failure is an InputError."""
    path = Path(path)
    if not os.path.lexists(path):  # a symlink loop exists but is no file: the reader says so
        raise InputError(f"{path}: no such file")
    if modality is None:
        chosen = modality_for_path(path)
    else:
        chosen = get_modality(modality)
        if not chosen.directory:
            check_suffix(path, chosen.suffixes, chosen.name)
    return chosen.read(path)


def write_signal(signal: Signal, path: str | Path) -> None:
    """Write ``signal`` with its own modality's writer, atomically; refuses unwritable suffixes."""
    path = Path(path)
    chosen = get_modality(signal.modality)
    suffix = path.suffix.lower()
    if not chosen.directory and suffix not in chosen.write_suffixes:
        raise InputError(
            f"{path}: cannot write {chosen.name} data as '{suffix or '(no suffix)'}' "
            f"(writable: {', '.join(chosen.write_suffixes)})"
        )
    chosen.write(signal, path)


__all__ = ["DATA_KINDS", "MODALITIES", "DataKind", "Modality", "get_modality", "modality_for_path", "read_signal",
           "register_modality", "write_signal"]
