"""Build a :class:`MetaINR` from a config, and save / load it as safetensors + JSON.

A model directory holds:

* ``config.json`` — the full training config, the item geometry (:class:`ItemSpec`) and the
  fingerprint of the weights;
* ``model.safetensors`` — the meta-learned weights (θ, conditioning network, φ0, step sizes);
* later, codec files added by ``vcinr fit-codec`` and the training checkpoint.

Nothing is ever unpickled: weights are safetensors, everything else is JSON.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from vcinr import __version__
from vcinr.config import Config
from vcinr.errors import ModelError
from vcinr.inr.conditioning import GatedConditioning, build_conditioning
from vcinr.inr.render import build_observation
from vcinr.inr.siren import Siren
from vcinr.limits import MAX_WEIGHTS_BYTES, open_regular, parse_json, read_json, sha256_bounded
from vcinr.schema import check_checkpoint_scalars, check_item, check_model_config
from vcinr.meta.metasgd import MetaINR

MODEL_FORMAT = 1
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
STATE_KEY = "vcinr.state"  # safetensors metadata key of a checkpoint's scalars (JSON)


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
    # Features of real-valued modalities lie in [0, 1]; occupancy logits start at p = ½.
    siren = Siren(in_dim, out_dim, m.width, m.depth, m.w0, output_bias=0.5 if spec.loss == "mse" else 0.0)
    if m.conditioning == "vcinr":
        options: dict[str, Any] = asdict(m.vcinr)
        latent = m.latent_dim
    elif m.conditioning == "mscn":
        options = {"budget": m.latent_dim, "l0_weight": m.mscn.l0_weight}
        latent = m.latent_dim * m.mscn.pool
    else:
        options, latent = {}, m.latent_dim
    conditioning = build_conditioning(m.conditioning, latent, siren.layer_shapes, **options)
    if isinstance(conditioning, GatedConditioning):
        conditioning.compensate_siren_init(siren)
    return MetaINR(siren, conditioning, config.meta.inner_steps, config.meta.lr_init, config.meta.lr_clip, spec.loss,
                   observation, spec.max_points)


def _sync_directory(directory: Path) -> None:
    """fsync a directory, so a rename in it survives a power cut (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary(path: Path) -> tuple[int, str]:
    """A new ``.NAME.XXXXXXXX.tmp`` beside ``path``, open for writing.

    Created with mode 0666 minus the umask, like any file a program writes (``mkstemp``'s
    0600 made ``.vci`` and model files unreadable to others while decoded outputs were 0644).
    """
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files that writes of ``path`` killed mid-way (SIGKILL, power cut) left behind.

    Only for files one process writes at a time (a run's checkpoints): the next writer of
    the same file cleans up after the killed one.
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through a temporary file, fsync and rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors ``save_file`` with the same crash safety as :func:`atomic_write_bytes`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path)
    mode = os.fstat(fd).st_mode & 0o777
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, mode)  # safetensors replaces the file with one of its own (mode 0600)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def save_state(path: Path, tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    """A checkpoint as *one* atomic safetensors file: tensors plus ``scalars`` as JSON metadata.

    One file, so a crash or SIGKILL leaves either the previous checkpoint or the new one,
    never tensors of one step beside the step counter of another.  Temporary files of a
    write that was killed are removed first.
    """
    remove_stale_temporaries(path)
    atomic_save_tensors(tensors, path, {STATE_KEY: json.dumps(scalars, allow_nan=False)})


def load_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Inverse of :func:`save_state`; raises ``SafetensorError``/``KeyError``/``ValueError`` on damage.

    The file is refused beyond ``MAX_WEIGHTS_BYTES`` (or when not a regular file) and its
    scalars are checked like a config (:func:`vcinr.schema.check_checkpoint_scalars`), so a
    tampered step, learning rate or time is a damaged checkpoint, not a traceback later.
    """
    open_regular(path, MAX_WEIGHTS_BYTES, "checkpoint", ModelError).close()
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    scalars = check_checkpoint_scalars(parse_json(metadata[STATE_KEY], "checkpoint state", ValueError))
    return tensors, scalars


def fingerprint_file(path: Path) -> str:
    """SHA-256 of a weights file: bitstreams name the exact model they need by it.

    Hashed in chunks and refused beyond ``MAX_WEIGHTS_BYTES`` (or when not a regular file),
    so a sparse multi-GB file is never read; :func:`load_model` and ``load_level`` hash before
    they load, which bounds what safetensors then allocates.
    """
    return sha256_bounded(path, MAX_WEIGHTS_BYTES, "weights file", ModelError)


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
        raise ModelError(f"{path}: unsupported model format {meta.get('format') if isinstance(meta, dict) else '?'} (this vcinr reads format {MODEL_FORMAT})")
    return meta


def load_model(directory: str | Path, device: str = "cpu") -> LoadedModel:
    """Load a model directory, refusing incomplete, foreign or tampered ones."""
    directory = Path(directory)
    meta = read_model_json(directory)
    weights = directory / WEIGHTS_FILE
    if not os.path.lexists(weights):
        raise ModelError(f"{directory} has no {WEIGHTS_FILE}; the model directory is incomplete")
    fingerprint = fingerprint_file(weights)
    if fingerprint != meta.get("fingerprint"):
        raise ModelError(f"{weights} does not match the fingerprint in {CONFIG_FILE}; the model was modified or mixed up")
    where = str(directory / CONFIG_FILE)
    item = check_item(meta.get("item"), where)
    config = check_model_config(meta.get("config"), item, where)
    item["item_shape"] = tuple(item["item_shape"])
    item["coord_range"] = tuple(item["coord_range"]) if item["coord_range"] is not None else None
    spec = ItemSpec(**item)
    try:
        # Built on the meta device (no memory) and filled by the weights themselves: a config
        # that implies any other network than the fingerprinted file holds allocates nothing.
        with torch.device("meta"):
            model = build_model(config, spec)
        model.load_state_dict(load_file(weights), assign=True)
    except (KeyError, TypeError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ModelError(f"{directory}: cannot load model ({str(exc).splitlines()[0]})") from None
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        raise ModelError(f"{directory}: cannot load model ({WEIGHTS_FILE} lacks some of the network's tensors)")
    model.to(device).eval()
    return LoadedModel(model, config, spec, fingerprint, directory)
