"""Schemas of the JSON files in a model directory, checked before anything is built from them.

``config.json`` is not covered by the model fingerprint (only ``model.safetensors`` is, and
changing that would change the ``.vci`` format), so an edited or damaged ``config.json``
could make :func:`vcinr.meta.model.build_model` allocate a network of any size (issue 14:
``width`` 1e9 was killed at 8 GB) or crash deep inside torch.  Instead every value is
type- and range-checked here, with a one-line :class:`~vcinr.errors.ModelError`, and the
memory that the implied sizes would take is checked against a budget:

* the network's caps (:data:`MAX_WIDTH`, :data:`MAX_DEPTH`, ...) are far above any paper
  configuration (width 512, depth 15) and keep a skeleton of the network cheap to build;
* :data:`MAX_DECODE_BYTES` bounds the activations of one decoder batch (``width`` ×
  coordinates per item × items per batch × 4 bytes), the part of decoding a config sizes;
* the weights themselves must then match the network the config implies exactly
  (:func:`vcinr.meta.model.load_model` builds it on the ``meta`` device and loads the
  file into it), so nothing is allocated beyond the fingerprinted weights file.

Codec-level JSON gets the same treatment (:func:`check_level_json`): a string ``lambda``
used to crash ``decompress`` after it had written its output.
"""

from __future__ import annotations

import math
import re
from typing import Any

from vcinr.config import Config, from_dict
from vcinr.errors import ConfigError, ModelError, shown
from vcinr.meta.losses import LOSSES
from vcinr.limits import MAX_COORDINATE
from vcinr.signal import MAX_POINTS

MAX_WIDTH = 8192
MAX_DEPTH = 64
MAX_LATENT = 1 << 16
MAX_BLOCKS = 16
MAX_RANK = 1024
MAX_POOL = 64
MAX_CHANNELS = 64
MAX_RANK_GRID = 8  # axes of an item (the bitstream's own limit)
MAX_SAMPLES = 1024  # volume-rendering samples per ray
MAX_CODEC_BITS = 16
DECODE_BATCH = 64  # items per decoder batch (vcinr.pipeline.BATCH), which the decode budget assumes
MAX_DECODE_BYTES = 2 << 30  # activations of one decoder batch, as a config implies them
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _int(value: Any, key: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ModelError(f"{key} must be an integer in {low}..{high}, got {shown(value)}")
    return value


def _float(value: Any, key: str, low: float = -1e18, high: float = 1e18) -> float:
    if type(value) not in (int, float) or not low <= value <= high:  # also NaN
        raise ModelError(f"{key} must be a number in [{low:g}, {high:g}], got {shown(value)}")
    return float(value)


def fingerprint(value: Any, key: str) -> str:
    """A lower-case hex SHA-256, as vcinr writes them."""
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ModelError(f"{key} must be a hex SHA-256, got {shown(value)}")
    return value


def _observation(value: Any, key: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("kind") != "volume":
        raise ModelError(f"{key} must be null or a volume-rendering setting, got {shown(value)}")
    known = {"kind", "samples", "near", "far", "view_dirs", "background", "density_shift"}
    if set(value) - known:
        raise ModelError(f"{key} has unknown settings {sorted(set(value) - known)}")
    if "samples" in value:
        _int(value["samples"], f"{key}.samples", 1, MAX_SAMPLES)
    for name in ("near", "far", "background", "density_shift"):
        if name in value:
            _float(value[name], f"{key}.{name}", -1e6, 1e6)
    if "view_dirs" in value and type(value["view_dirs"]) is not bool:
        raise ModelError(f"{key}.view_dirs must be true or false")
    return dict(value)


def check_item(item: Any, where: str) -> dict[str, Any]:
    """The ``item`` of a model's ``config.json`` (an :class:`~vcinr.meta.model.ItemSpec`'s fields), validated."""
    from vcinr.modalities import MODALITIES

    if not isinstance(item, dict):
        raise ModelError(f"{where}: item must be an object")
    known = {"modality", "in_dim", "out_dim", "loss", "item_shape", "coord_range", "observation", "max_points"}
    if set(item) - known or not {"modality", "in_dim", "out_dim", "loss", "item_shape", "coord_range"} <= set(item):
        raise ModelError(f"{where}: item must have the fields {sorted(known)}")
    if not isinstance(item["modality"], str) or item["modality"] not in MODALITIES:
        raise ModelError(f"{where}: item.modality must be one of {', '.join(MODALITIES)}, "
                         f"got {shown(item['modality'])}")
    if not isinstance(item["loss"], str) or item["loss"] not in LOSSES:  # a list or object is unhashable
        raise ModelError(f"{where}: item.loss must be {' or '.join(LOSSES)}, got {shown(item['loss'])}")
    _int(item["in_dim"], f"{where}: item.in_dim", 1, MAX_RANK_GRID)
    _int(item["out_dim"], f"{where}: item.out_dim", 1, MAX_CHANNELS)
    shape = item["item_shape"]
    if not isinstance(shape, list) or not 1 <= len(shape) <= MAX_RANK_GRID:
        raise ModelError(f"{where}: item.item_shape must be a list of 1..{MAX_RANK_GRID} sizes")
    for n in shape:
        _int(n, f"{where}: item.item_shape", 1, MAX_POINTS)
    if math.prod(shape) > MAX_POINTS:
        raise ModelError(f"{where}: item.item_shape {shape} is larger than vcinr codes ({MAX_POINTS} points)")
    span = item["coord_range"]
    if span is not None:
        if not isinstance(span, list) or len(span) != 2:
            raise ModelError(f"{where}: item.coord_range must be null or [low, high]")
        low, high = (_float(v, f"{where}: item.coord_range", -MAX_COORDINATE, MAX_COORDINATE) for v in span)
        if not low < high:
            raise ModelError(f"{where}: item.coord_range must be [low, high] with low < high")
    observation = _observation(item.get("observation"), f"{where}: item.observation")
    if item.get("max_points") is not None:
        _int(item["max_points"], f"{where}: item.max_points", 1, MAX_POINTS)
    return dict(item, observation=observation)


def check_model_config(raw: Any, item: dict[str, Any], where: str) -> Config:
    """The ``config`` of a model's ``config.json``: the training config's own checks, caps and the decode budget."""
    try:
        config = from_dict(Config, raw)
        config.validate()
    except ConfigError as exc:
        raise ModelError(f"{where}: {exc}") from None
    m = config.model
    caps = {"model.width": (m.width, MAX_WIDTH), "model.depth": (m.depth, MAX_DEPTH),
            "model.latent_dim": (m.latent_dim, MAX_LATENT), "model.vcinr.hidden": (m.vcinr.hidden, MAX_WIDTH),
            "model.vcinr.blocks": (m.vcinr.blocks, MAX_BLOCKS), "model.vcinr.rank": (m.vcinr.rank, MAX_RANK),
            "model.mscn.pool": (m.mscn.pool, MAX_POOL), "meta.inner_steps": (config.meta.inner_steps, 1000)}
    for key, (value, cap) in caps.items():
        if value > cap:
            raise ModelError(f"{where}: {key} = {value} is more than a model vcinr loads ({cap})")
    points = math.prod(item["item_shape"]) * (item["observation"] or {}).get("samples", 1)
    batch = DECODE_BATCH if item["coord_range"] is not None else 1
    needed = 4 * max(m.width, m.vcinr.hidden) * points * batch
    if needed > MAX_DECODE_BYTES:
        raise ModelError(f"{where}: width {m.width} on items of {points} points needs {needed / 2**30:.1f} GiB per "
                         f"decoder batch, more than vcinr allows ({MAX_DECODE_BYTES / 2**30:.0f} GiB)")
    return config


def check_level_json(info: Any, where: str) -> dict[str, Any]:
    """A codec level's JSON (written by ``save_level``), validated before its weights are built."""
    if not isinstance(info, dict):
        raise ModelError(f"{where}: not a JSON object")
    if info.get("kind") not in ("learned", "uniform"):
        raise ModelError(f"{where}: kind must be learned or uniform, got {shown(info.get('kind'))}")
    fingerprint(info.get("model_fingerprint"), f"{where}: model_fingerprint")
    fingerprint(info.get("weights_fingerprint"), f"{where}: weights_fingerprint")
    _int(info.get("latent_dim"), f"{where}: latent_dim", 1, MAX_LATENT)
    _int(info.get("symbol_dim"), f"{where}: symbol_dim", 1, MAX_LATENT)
    if info["kind"] == "learned":
        _float(info.get("lambda"), f"{where}: lambda", 0.0, 1e18)
        arch = info.get("arch")
        if not isinstance(arch, dict) or set(arch) != {"width", "blocks", "z_dim"}:
            raise ModelError(f"{where}: arch must be an object with width, blocks and z_dim")
        _int(arch["width"], f"{where}: arch.width", 1, MAX_WIDTH)
        _int(arch["blocks"], f"{where}: arch.blocks", 0, MAX_BLOCKS)
        _int(arch["z_dim"], f"{where}: arch.z_dim", 1, MAX_LATENT)
    else:
        _int(info.get("bits"), f"{where}: bits", 1, MAX_CODEC_BITS)
        _float(info.get("clip"), f"{where}: clip", 1e-6, 1e6)
    return info


__all__ = ["DECODE_BATCH", "MAX_DECODE_BYTES", "check_item", "check_level_json",
           "check_model_config", "fingerprint"]
