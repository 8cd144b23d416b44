"""Build a :class:`MetaINR` from a config, and save / load it as safetensors + JSON (through :mod:`vcinr.storage`).

A model directory holds:

* ``config.json`` — the full training config, the item geometry (:class:`ItemSpec`) and the
  fingerprint of the weights;
* ``model.safetensors`` — the meta-learned weights (θ, conditioning network, φ0, step sizes);
* later, codec files added by ``vcinr fit-codec`` and the training checkpoint.

Nothing is ever unpickled: weights are safetensors, everything else is JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch.overrides import TorchFunctionMode

from vcinr import __version__
from vcinr.config import Config
from vcinr.errors import ModelError
from vcinr.inr.conditioning import conditioning_class
from vcinr.inr.render import build_observation
from vcinr.inr.siren import Siren
from vcinr.limits import read_json
from vcinr.meta.losses import get_loss
from vcinr.meta.metasgd import MetaINR
from vcinr.schema import check_item, check_model_config
from vcinr.storage import atomic_save_tensors, atomic_write_bytes, fingerprint_file

MODEL_FORMAT = 1
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


@dataclass
class ItemSpec:
    """The geometry of the items a model was trained on, which any input must match.

    ``item_shape`` is the patch shape (or the whole grid when not patching); ``coord_range``
    is the regular-grid range patches use, ``None`` when coordinates come from the signal
    (the sphere), in which case inputs must have exactly ``item_shape``.  ``observation``
    names the operator between network and features (volume rendering for scenes, see
    :func:`vcinr.inr.render.build_observation`; the network then has the operator's own
    input/output sizes) and ``max_points`` the coordinates per item of an inner-loop step.
    """

    modality: str
    in_dim: int
    out_dim: int
    loss: str
    item_shape: tuple[int, ...]
    coord_range: tuple[float, float] | None
    observation: dict[str, Any] | None = None
    max_points: int | None = None


def build_model(config: Config, spec: ItemSpec) -> MetaINR:
    m = config.model
    observation = build_observation(spec.observation)
    in_dim, out_dim = (spec.in_dim, spec.out_dim) if observation is None else (observation.field_in_dim,
                                                                               observation.field_out_dim)
    siren = Siren(in_dim, out_dim, m.width, m.depth, m.w0, output_bias=get_loss(spec.loss).output_bias)
    section = getattr(m, m.conditioning, None)  # the scheme's own options, model.<scheme>, if it has any
    conditioning = conditioning_class(m.conditioning).from_config(m.latent_dim, siren.layer_shapes,
                                                                  asdict(section) if section is not None else {})
    conditioning.compensate_siren_init(siren)
    return MetaINR(siren, conditioning, config.meta.inner_steps, config.meta.lr_init, config.meta.lr_clip, spec.loss,
                   observation, spec.max_points)


def save_model(model: MetaINR, config: Config, spec: ItemSpec, directory: Path) -> str:
    """Write weights and config; returns the fingerprint."""
    directory = Path(directory)
    atomic_save_tensors(model.state_dict(), directory / WEIGHTS_FILE)
    fingerprint = fingerprint_file(directory / WEIGHTS_FILE)
    meta = {
        "vcinr_version": __version__,
        "format": MODEL_FORMAT,
        "fingerprint": fingerprint,
        "item": asdict(spec),
        "config": config.to_dict(),
    }
    atomic_write_bytes(directory / CONFIG_FILE, json.dumps(meta, indent=2).encode())
    return fingerprint


def store_half_precision(directory: str | Path) -> str:
    """Rewrite a model's weights as float16 (half the bytes) and its fingerprint; returns the new one.

    For shipping: the model then *is* the rounded weights (they load as float32), so fit its
    codecs after this, not before — a codec's latents belong to the exact weights they were
    computed with.
    """
    loaded = load_model(directory)
    state = {k: v.half() if v.is_floating_point() else v for k, v in loaded.model.state_dict().items()}
    atomic_save_tensors(state, loaded.directory / WEIGHTS_FILE)
    fingerprint = fingerprint_file(loaded.directory / WEIGHTS_FILE)
    meta = read_model_json(loaded.directory)
    meta["fingerprint"] = fingerprint
    atomic_write_bytes(loaded.directory / CONFIG_FILE, json.dumps(meta, indent=2).encode())
    return fingerprint


@dataclass
class LoadedModel:
    model: MetaINR
    config: Config
    spec: ItemSpec
    fingerprint: str
    directory: Path


def read_model_json(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not os.path.lexists(path):  # anything else there (a FIFO, a symlink loop) is refused by read_json
        raise ModelError(f"{directory} is not a vcinr model directory (no {CONFIG_FILE}); train one with 'vcinr train'")
    meta = read_json(path, "model config", ModelError)
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else "?"
        raise ModelError(f"{path}: unsupported model format {found} (this vcinr reads format {MODEL_FORMAT})")
    return meta


class _SkeletonBuild(TorchFunctionMode):
    """Build a network on the meta device without the arithmetic of its initialisation.

    The meta device gives the network's shapes without memory; its values come from the
    weights file.  In torch 2.13 some initialisation ops have meta kernels written in Python,
    and the first use of one imports sympy or ``torch._dynamo``: about 1.3 CPU s that every
    ``compress`` and ``decompress`` would pay before its first work (docs/performance.md,
    "Start-up").  These ops, the ones :func:`build_model` runs, are answered without
    computing: the in-place fills return their tensor (a meta tensor has no values to fill),
    ``randn`` is ``empty``, the same meta tensor.  tests/test_startup.py checks that loading a
    model of each conditioning imports neither module.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.nn.init.normal_, torch.Tensor.normal_, torch.Tensor.div_):
            return args[0] if args else kwargs["tensor"]  # nn.init passes its tensor by keyword
        if func is torch.randn:
            func = torch.empty
        return func(*args, **kwargs)


def load_model(directory: str | Path, device: str = "cpu") -> LoadedModel:
    """Load a model directory, refusing incomplete, foreign or tampered ones."""
    directory = Path(directory)
    meta = read_model_json(directory)
    weights = directory / WEIGHTS_FILE
    if not os.path.lexists(weights):
        raise ModelError(f"{directory} has no {WEIGHTS_FILE}; the model directory is incomplete")
    fingerprint = fingerprint_file(weights)
    if fingerprint != meta.get("fingerprint"):
        raise ModelError(f"{weights} does not match the fingerprint in {CONFIG_FILE}; "
                         "the model was modified or mixed up")
    where = str(directory / CONFIG_FILE)
    item = check_item(meta.get("item"), where)
    config = check_model_config(meta.get("config"), item, where)
    item["item_shape"] = tuple(item["item_shape"])
    item["coord_range"] = tuple(item["coord_range"]) if item["coord_range"] is not None else None
    spec = ItemSpec(**item)
    try:
        # Built on the meta device (no memory) and filled by the weights themselves: a config
        # that implies any other network than the fingerprinted file holds allocates nothing.
        with torch.device("meta"), _SkeletonBuild():
            model = build_model(config, spec)
        # weights stored in half precision (bundled models, to stay small) compute in float32
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(weights).items()}
        model.load_state_dict(state, assign=True)
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ModelError(f"{directory}: cannot load model ({str(exc).splitlines()[0]})") from None
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise ModelError(f"{directory}: cannot load model ({WEIGHTS_FILE} lacks some of the network's tensors)")
    model.to(device).eval()
    return LoadedModel(model, config, spec, fingerprint, directory)
