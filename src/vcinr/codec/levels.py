"""Quality levels: the codecs stored in a model directory, their names and their files.

``vcinr fit-codec`` adds one codec per quality level under ``MODEL_DIR/codecs/``::

    codecs/learned-lambda0.01.safetensors   weights, statistics, CDF tables, item coordinates
    codecs/learned-lambda0.01.json          settings, fingerprints, train-set rate/quality
    codecs/uniform-6bit.safetensors / .json

Naming (what ``--quality`` takes):

* learned (transform-coder) levels are numbered ``1 .. K`` in order of increasing λ, so
  ``1`` is the lowest rate and ``K`` the highest quality;
* uniform-quantisation levels are ``u<bits>`` (``u3`` … ``u8``);
* the file stem (``learned-lambda0.01``) is accepted too and never changes meaning when
  more levels are added.

Without ``--quality`` the highest learned level is used (the highest ``u<bits>`` if the
model has no learned level).  Every level's JSON names the fingerprint of the model it was
fitted for and the SHA-256 of its own weights file; loading refuses mismatches.  Bitstreams
name the level by that SHA-256, so decoding needs no ``--quality``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from vcinr.codec.codecs import LatentCodec, LearnedCodec, UniformCodec
from vcinr.errors import ConfigError, ModelError
from vcinr.limits import read_json
from vcinr.meta.model import LoadedModel
from vcinr.schema import check_level_json
from vcinr.storage import atomic_save_tensors, atomic_write_bytes, fingerprint_file

CODEC_DIR = "codecs"
CODEC_FORMAT = 1
_STEM = re.compile(r"^(learned-lambda[0-9.e+-]+|uniform-\d+bit)$")


def learned_stem(lam: float) -> str:
    return f"learned-lambda{lam:g}"


def uniform_stem(bits: int) -> str:
    return f"uniform-{bits}bit"


@dataclass
class LevelInfo:
    """A quality level as listed from its JSON (weights not loaded)."""

    name: str  # "1".."K" or "u<bits>"
    stem: str
    kind: str  # "learned" | "uniform"
    record: dict[str, Any]  # the level's JSON
    directory: Path

    @property
    def weights(self) -> Path:
        return self.directory / f"{self.stem}.safetensors"

    @property
    def fingerprint(self) -> str:
        return str(self.record.get("weights_fingerprint", ""))

    @property
    def label(self) -> str:
        """``name`` plus its setting, e.g. ``2 (λ=0.01)`` or ``u6 (6 bits)``."""
        if self.kind == "learned":
            return f"{self.name} (lambda={self.record['lambda']:g})"
        return f"{self.name} ({self.record['bits']} bits)"


@dataclass
class QualityLevel:
    """A loaded quality level: what the encoder and decoder use."""

    info: LevelInfo
    codec: LatentCodec
    coords: torch.Tensor  # (N, in_dim) coordinates of one item (a patch, or the whole grid)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def fingerprint(self) -> str:
        return self.info.fingerprint

    @property
    def record(self) -> dict[str, Any]:
        return self.info.record


def codec_dir(model_dir: Path) -> Path:
    return Path(model_dir) / CODEC_DIR


def read_level_json(path: Path) -> dict[str, Any] | None:
    """A level's JSON, or ``None`` when it is unreadable, damaged or not a codec of this format.

    Read with a size cap and checked against :func:`vcinr.schema.check_level_json`, so a
    damaged level is treated as absent (``fit-codec`` refits it, ``decompress`` names the
    missing codec) instead of crashing whoever uses its values later.
    """
    try:
        info = read_json(path, "codec level", ModelError)
        if not isinstance(info, dict) or info.get("format") != CODEC_FORMAT:
            return None
        return check_level_json(info, str(path))
    except ModelError:
        return None


def list_levels(loaded: LoadedModel) -> list[LevelInfo]:
    """All quality levels fitted for this model, learned (by λ) first, then uniform (by bits).

    Levels fitted for another model (a retrained one) are skipped: they could not decode.
    """
    folder = codec_dir(loaded.directory)
    learned, uniform = [], []
    if folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            if not _STEM.match(path.stem):
                continue
            info = read_level_json(path)
            if info is None or info.get("model_fingerprint") != loaded.fingerprint:
                continue
            if not (folder / f"{path.stem}.safetensors").is_file():
                continue
            (learned if info["kind"] == "learned" else uniform).append((path.stem, info))
    learned.sort(key=lambda item: float(item[1]["lambda"]))
    uniform.sort(key=lambda item: int(item[1]["bits"]))
    levels = [LevelInfo(str(i + 1), stem, "learned", info, folder) for i, (stem, info) in enumerate(learned)]
    levels += [LevelInfo(f"u{info['bits']}", stem, "uniform", info, folder) for stem, info in uniform]
    return levels


def _no_levels(loaded: LoadedModel) -> ModelError:
    return ModelError(f"{loaded.directory} has no codecs for this model yet; "
                      f"run 'vcinr fit-codec --model {loaded.directory}'")


def find_level(loaded: LoadedModel, quality: str | None) -> LevelInfo:
    """The level ``quality`` names (see the module docstring), or the default one."""
    levels = list_levels(loaded)
    if not levels:
        raise _no_levels(loaded)
    if quality is None:
        learned = [lv for lv in levels if lv.kind == "learned"]
        return learned[-1] if learned else levels[-1]
    wanted = str(quality).strip()
    for level in levels:
        if wanted in (level.name, level.stem):
            return level
    names = ", ".join(lv.label for lv in levels)
    raise ConfigError(f"no quality level {wanted!r} for model {loaded.directory} (available: {names})")


def find_level_by_fingerprint(loaded: LoadedModel, fingerprint: str) -> LevelInfo | None:
    """The level whose weights' SHA-256 is (or starts with) ``fingerprint``."""
    fingerprint = fingerprint.lower()
    for level in list_levels(loaded):
        if fingerprint and level.fingerprint.startswith(fingerprint):
            return level
    return None


def load_level(loaded: LoadedModel, level: LevelInfo | str | None) -> QualityLevel:
    """Load a level's weights, refusing a file that does not match its recorded fingerprint."""
    if not isinstance(level, LevelInfo):
        level = find_level(loaded, level)
    if fingerprint_file(level.weights) != level.fingerprint:
        raise ModelError(f"{level.weights} does not match the fingerprint in {level.stem}.json; "
                         "the codec was modified or mixed up (re-run 'vcinr fit-codec')")
    info = level.record
    try:
        tensors = load_file(level.weights)
        if level.kind == "learned":
            codec: LatentCodec = LearnedCodec.from_tensors(tensors, info["arch"])
        else:
            codec = UniformCodec.from_tensors(tensors, int(info["bits"]), float(info["clip"]))
        coords = tensors["coords"].float()
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ModelError(f"{level.weights}: cannot load codec ({str(exc).splitlines()[0]})") from None
    if codec.latent_dim != int(info.get("latent_dim", -1)):
        raise ModelError(f"{level.weights}: latent dimension does not match {level.stem}.json")
    return QualityLevel(level, codec, coords)


def save_level(loaded: LoadedModel, stem: str, codec: LatentCodec, coords: torch.Tensor,
               info: dict[str, Any]) -> LevelInfo:
    """Write ``stem.safetensors`` then ``stem.json`` (whose presence marks the level complete)."""
    folder = codec_dir(loaded.directory)
    weights = folder / f"{stem}.safetensors"
    atomic_save_tensors({**codec.tensors(), "coords": coords.reshape(-1, coords.shape[-1]).float()}, weights)
    info = {
        "format": CODEC_FORMAT,
        "kind": codec.kind,
        "model_fingerprint": loaded.fingerprint,
        "weights_fingerprint": fingerprint_file(weights),
        "latent_dim": codec.latent_dim,
        "symbol_dim": codec.symbol_dim,
        **info,
    }
    atomic_write_bytes(folder / f"{stem}.json", json.dumps(info, indent=2).encode())
    return LevelInfo("?", stem, codec.kind, info, folder)
