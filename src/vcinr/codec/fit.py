"""``vcinr fit-codec``: fit the quality levels of a trained model (Algorithm 2, appendix D).

1. Encode the model's training items to their latents φ (:meth:`MetaINR.encode`: the frozen
   Meta-SGD inner loop, no meta-gradient), cached in ``codecs/latents.safetensors``.
2. One *uniform* level per bit depth (COIN++ baseline): train-set statistics and symbol
   histograms, no training.
3. One *learned* level per λ: a transform coder trained on

       loss = R / N + λ · 255² · D                    (per item, averaged over the batch)

   with ``R`` the code's bits under the factorised entropy model (``z + U(-½, ½)`` in
   training), ``N`` the number of grid points of an item (so ``R / N`` is bits per point,
   bpp) and ``D`` the distortion *on the data* (paper eq. 5): the decoded ``φ̃ = g_s(z̃)`` is
   de-normalised and run through the frozen INR, and compared with the item's features by the
   model's own loss — MSE for features in [0, 1], BCE for occupancies.  The ``255²`` makes λ
   CompressAI's convention (``bpp + λ·255²·MSE``), so its image λs (0.0018 … 0.0932) give
   comparable trade-offs.  The bottleneck's quantiles are fitted by its auxiliary loss with a
   separate Adam, as in CompressAI, and refined by bisection before the CDFs are frozen.

Re-running skips levels whose settings are unchanged, refits changed ones, and resumes an
interrupted level from its checkpoint (``codecs/.ckpt-<level>.safetensors``, one atomic file).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from tqdm import tqdm

from vcinr.codec.codecs import LatentCodec, UniformCodec, latent_stats
from vcinr.codec.levels import (
    codec_dir,
    learned_stem,
    read_level_json,
    save_level,
    uniform_stem,
)
from vcinr.errors import ConfigError, InputError, ModelError
from vcinr.limits import MAX_WEIGHTS_BYTES, open_regular, read_json
from vcinr.meta.metasgd import MetaINR, item_coords
from vcinr.meta.model import LoadedModel, load_model
from vcinr.storage import atomic_save_tensors, atomic_write_bytes, load_state, save_state

if TYPE_CHECKING:
    from vcinr.data import ItemSet

DEFAULT_LAMBDAS = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
DEFAULT_BITS = (3, 4, 5, 6, 7, 8)
DISTORTION_SCALE = 255.0**2
LATENTS_FILE, LATENTS_JSON = "latents.safetensors", "latents.json"


@dataclass
class FitSettings:
    """Settings of ``fit-codec``; ``None`` widths/dims default from the latent dimension D.

    Architecture as in the paper's tables (SELU residual MLPs with dim(z) = dim(φ)); ``width``
    defaults to ``max(2·D, 64)`` and ``blocks`` to 1.  The schedule is this project's, chosen so
    that the defaults fit a bundled-size model's levels in minutes on two CPU cores (the paper's
    Adam lr 1e-4 for far longer stays available through ``lr``/``steps``):

    * ``warmup_steps`` cheap steps in latent space, where the distortion is the linearised
      data-space one (:func:`distortion_gain`): no INR forward pass, ~1 ms a step;
    * then ``steps`` steps with the distortion measured on the data through the frozen INR
      (eq. 5), on ``max_points`` random points of each item, the lr decaying on a cosine from
      ``lr`` to ``final_lr_fraction · lr``.
    """

    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    bits: tuple[int, ...] = DEFAULT_BITS
    steps: int = 600
    warmup_steps: int = 2000
    lr: float = 1e-3
    final_lr_fraction: float = 0.1
    max_points: int | None = 256
    aux_lr: float = 1e-3
    batch_size: int = 64
    width: int | None = None
    blocks: int = 1
    z_dim: int | None = None
    clip: float = 3.0
    seed: int = 0
    max_items: int | None = None
    latent_batch: int = 64
    eval_items: int = 256
    checkpoint_every: int = 250

    def validate(self) -> None:
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup-steps must be >= 0, got {self.warmup_steps}")
        if not 0 < self.final_lr_fraction <= 1:
            raise ConfigError(f"final-lr-fraction must be in (0, 1], got {self.final_lr_fraction}")
        for name in ("steps", "batch_size", "latent_batch", "eval_items", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("width", "z_dim", "max_items", "max_points"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {value}")
        if self.blocks < 0:
            raise ConfigError(f"blocks must be >= 0, got {self.blocks}")
        if not all(math.isfinite(x) and x > 0 for x in self.lambdas):
            raise ConfigError(f"lambdas must be positive numbers, got {list(self.lambdas)}")
        if not all(1 <= b <= 12 for b in self.bits):
            raise ConfigError(f"bits must be between 1 and 12, got {list(self.bits)}")
        if not (self.lr > 0 and self.aux_lr > 0 and self.clip > 0):
            raise ConfigError("lr, aux-lr and clip must be positive")
        if not self.lambdas and not self.bits:
            raise ConfigError("nothing to fit: give at least one lambda or one bit depth")


@dataclass
class LevelResult:
    stem: str
    kind: str
    status: str  # "fitted", "skipped" (unchanged), "resumed"
    metrics: dict[str, float]
    seconds: float


@dataclass
class FitResult:
    model_dir: Path
    items: int
    latent_dim: int
    levels: list[LevelResult] = field(default_factory=list)


@dataclass
class HeldOut:
    """Whole held-out signals that quality levels are scored on: their items and latents φ."""

    items: ItemSet
    latents: torch.Tensor  # (num_items, D)
    split: str  # "test", or "train" where the data has no test split


def evaluate_codec(model: MetaINR, codec: LatentCodec, held_out: HeldOut, batch_size: int = 64) -> dict[str, float]:
    """Rate and quality of whole held-out signals coded at one quality level.

    ``bpp`` is the entropy model's estimate of the payload (no container) over every real
    point of the signals; ``psnr`` is each whole signal's PSNR (one MSE over the merged
    patches, :mod:`vcinr.meta.quality`) averaged over signals, with ``psnr_patch_mean`` beside
    it for patched data and ``snr`` for audio; ``accuracy`` for occupancies.  What
    ``compress`` reports adds the container bytes and the writer's rounding (8-bit pixels).
    """
    from vcinr.meta.quality import SignalQuality
    from vcinr.meta.training import flat_items
    from vcinr.modalities import get_modality

    items = held_out.items
    coords, features = flat_items(items)
    files = items.files()
    mask = items.point_mask.flatten(1) if items.point_mask is not None else None
    quality = SignalQuality(items.num_files, model.loss, get_modality(items.modality).snr_centre)
    bits = 0.0
    with torch.no_grad():
        for start in range(0, features.shape[0], batch_size):
            batch = slice(start, start + batch_size)
            symbols = codec.to_symbols(held_out.latents[batch])
            bits += codec.estimated_bits(symbols)
            logits = model.decode_raw(item_coords(coords, batch), codec.from_symbols(symbols))
            quality.add(logits, features[batch], files[batch], mask[batch] if mask is not None else None)
    points = float(mask.sum()) if mask is not None else float(features.shape[0] * features.shape[1])
    return {"bpp": bits / points, **quality.result()}


def _load_training_items(loaded: LoadedModel, data: str | Path | None, max_items: int | None):
    from vcinr.data import load_items
    from vcinr.meta.training import flat_items

    cfg = loaded.config.data
    if cfg is None and data is None:
        raise ConfigError("the model's config records no data section; pass --data PATH")
    if cfg is None:
        raise ConfigError("the model's config records no data kind; cannot reload its training items")
    if data is not None:
        cfg = dataclasses.replace(cfg, path=str(data))
    elif not Path(cfg.path).exists():
        raise InputError(f"{cfg.path}: the training data recorded in the model's config is not there "
                         f"(relative paths are relative to the current folder); pass --data PATH")
    if max_items is not None:
        cfg = dataclasses.replace(cfg, max_items=max_items)
    items = load_items(cfg, "train")
    spec = loaded.spec
    if items.modality != spec.modality or tuple(items.features.shape[1:-1]) != tuple(spec.item_shape) \
            or items.features.shape[-1] != spec.out_dim:
        raise InputError(
            f"{cfg.path}: items are {items.modality} {list(items.features.shape[1:])} but the model was trained on "
            f"{spec.modality} {list(spec.item_shape) + [spec.out_dim]}"
        )
    coords, features = flat_items(items)
    if max_items is not None and features.shape[0] > max_items:  # mixed sources: the cap is on the total
        keep = torch.randperm(features.shape[0], generator=torch.Generator().manual_seed(0))[:max_items].sort().values
        features = features[keep]
        coords = item_coords(coords, keep)
    return cfg, coords, features


def _held_out(loaded: LoadedModel, cfg, settings: FitSettings, progress: bool) -> HeldOut:
    """The first whole test signals (about ``eval_items`` items) with their latents.

    Data without a test split (``test_fraction: 0``) is scored on its first training signals
    instead, and the level's JSON says so.
    """
    from vcinr.data import load_items
    from vcinr.meta.training import flat_items, whole_signals

    split = "test"
    try:
        items = load_items(cfg, "test")
    except InputError:
        split, items = "train", load_items(cfg, "train")
    count = whole_signals(items, settings.eval_items)
    items = dataclasses.replace(
        items, features=items.features[:count],
        coords=items.coords[:count] if items.coords.dim() == items.features.dim() else items.coords,
        file_index=items.file_index[:count] if items.file_index is not None else None,
        point_mask=items.point_mask[:count] if items.point_mask is not None else None,
        query_features=None, query_coords=None)
    coords, features = flat_items(items)
    latents = loaded.model.encode(coords, features, settings.latent_batch, progress, f"latents of {split} signals")
    return HeldOut(items, latents, split)


def _cached_latents(loaded: LoadedModel, data_key: dict, coords, features, settings: FitSettings,
                    progress: bool) -> torch.Tensor:
    folder = codec_dir(loaded.directory)
    key = {"model_fingerprint": loaded.fingerprint, "data": data_key, "items": int(features.shape[0])}
    meta_path, tensor_path = folder / LATENTS_JSON, folder / LATENTS_FILE
    if meta_path.is_file() and tensor_path.is_file():
        try:  # a damaged, oversized or replaced cache (bounded reads, as for any file) is recomputed
            if read_json(meta_path, "latents cache", ModelError) == key:
                open_regular(tensor_path, MAX_WEIGHTS_BYTES, "latents cache", ModelError).close()
                latents = load_file(tensor_path)["latents"]
                if latents.dim() == 2 and latents.shape[0] == features.shape[0] and bool(latents.isfinite().all()):
                    return latents
        except (ModelError, SafetensorError, KeyError, OSError):
            pass
    latents = loaded.model.encode(coords, features, settings.latent_batch, progress, "latents of training items")
    atomic_save_tensors({"latents": latents}, tensor_path)
    atomic_write_bytes(meta_path, json.dumps(key).encode())
    return latents


# --- the transform coder's training loop ------------------------------------------------------


class _Checkpoint:
    """Coder, both optimisers and RNG states as tensors, step and settings as JSON metadata, in one file."""

    def __init__(self, folder: Path, stem: str):
        self.path = folder / f".ckpt-{stem}.safetensors"

    def save(self, coder, opts: dict[str, torch.optim.Optimizer], sampler: torch.Generator, step: int,
             settings: dict) -> None:
        tensors = {f"coder.{k}": v for k, v in coder.state_dict().items()}
        for name, opt in opts.items():
            for pid, pstate in opt.state_dict()["state"].items():
                for key, value in pstate.items():
                    tensors[f"{name}.{pid}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        tensors["rng.torch"], tensors["rng.sampler"] = torch.get_rng_state(), sampler.get_state()
        save_state(self.path, tensors, {"step": step, "settings": settings})

    def load(self, coder, opts: dict[str, torch.optim.Optimizer], sampler: torch.Generator, settings: dict) -> int:
        """The step to resume from (0 when there is no usable checkpoint for these settings)."""
        if not self.path.is_file():
            return 0
        try:
            tensors, scalars = load_state(self.path)
            if scalars.get("settings") != settings:
                return 0
            state = {k[6:]: v for k, v in tensors.items() if k.startswith("coder.")}
            coder.resize_entropy_buffers(state)
            coder.load_state_dict(state)
            for name, opt in opts.items():
                per_param: dict[int, dict[str, torch.Tensor]] = {}
                for key, value in tensors.items():
                    if key.startswith(f"{name}."):
                        _, pid, item = key.split(".", 2)
                        per_param.setdefault(int(pid), {})[item] = value
                opt.load_state_dict({"state": per_param, "param_groups": opt.state_dict()["param_groups"]})
            torch.set_rng_state(tensors["rng.torch"])
            sampler.set_state(tensors["rng.sampler"])
            return int(scalars["step"])
        except (ModelError, SafetensorError, KeyError, RuntimeError, ValueError, OSError):
            return 0  # a damaged (or oversized, or not a file) checkpoint only costs the steps since the level's start

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def distortion_gain(model: MetaINR, coords: torch.Tensor, latents: torch.Tensor, std: torch.Tensor,
                    items: int = 256, scale: float = 0.1, seed: int = 0) -> float:
    """How much the INR's output moves, in the model's loss, per unit variance of an error on normalised φ.

    With ``x = (φ − μ) / σ`` and a small error ``e`` on x, the loss between the outputs for
    ``φ`` and for ``φ + σ·e`` is about ``c · mean(e²)`` (the Gauss–Newton part of eq. 5's
    distortion: MSE between outputs, or for occupancies the BCE excess over the output's own
    entropy).  ``c`` is measured by finite differences on a fixed sample of training items, so
    the latent-space warm-up of :func:`train_transform_coder` optimises
    ``bpp + λ·255²·c·mean(e²)``, a cheap stand-in for eq. 5 with the same λ.
    """
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, latents.shape[0], (min(items, latents.shape[0]),), generator=generator)
    phi = latents[idx]
    noise = torch.randn(phi.shape, generator=generator) * scale * std
    points = item_coords(coords, idx)
    with torch.no_grad():
        reference = model.decode(points, phi)  # features: the loss's targets
        base = model.item_loss(model.decode_raw(points, phi), reference)
        moved = model.item_loss(model.decode_raw(points, phi + noise), reference)
    return max(float((moved - base).mean()) / scale**2, 1e-12)


def _lr_factor(step: int, settings: FitSettings) -> float:
    """1 through the warm-up, then a cosine from 1 to ``final_lr_fraction`` over the data-space steps."""
    if step < settings.warmup_steps:
        return 1.0
    progress = (step - settings.warmup_steps) / settings.steps
    return settings.final_lr_fraction + (1 - settings.final_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress))


def train_transform_coder(model: MetaINR, coords: torch.Tensor, latents: torch.Tensor, features: torch.Tensor,
                          lam: float, settings: FitSettings, checkpoint: _Checkpoint | None = None,
                          key: dict | None = None, progress: bool = True, desc: str = "codec"):
    """Train one transform coder (one λ): a latent-space warm-up, then eq. 5 on the data; returns it.

    Steps ``0 .. warmup_steps`` use the linearised distortion (:func:`distortion_gain`), the
    rest the model's loss on ``max_points`` random points of each item through the frozen INR.
    One step counter covers both phases, so a checkpoint resumes either.
    """
    from vcinr.codec.transform import TransformCoder

    dim = latents.shape[1]
    width = settings.width or max(2 * dim, 64)
    z_dim = settings.z_dim or dim
    torch.manual_seed(settings.seed)
    mean, std = latent_stats(latents)
    coder = TransformCoder(mean, std, width, settings.blocks, z_dim)
    main, aux = coder.parameter_groups()
    opts = {"opt": torch.optim.Adam(main, lr=settings.lr), "aux": torch.optim.Adam(aux, lr=settings.aux_lr)}
    sampler = torch.Generator().manual_seed(settings.seed)
    start = checkpoint.load(coder, opts, sampler, key) if checkpoint is not None else 0
    model.requires_grad_(False)
    points = features.shape[1]
    max_points = min(filter(None, (settings.max_points, model.max_points)), default=None)
    gain = distortion_gain(model, coords, latents, std, seed=settings.seed) if settings.warmup_steps else 0.0
    normalised = (latents - mean) / std
    total = settings.warmup_steps + settings.steps
    coder.train()
    bar = tqdm(total=total, initial=start, desc=desc, unit="step", disable=not progress, leave=False)
    for step in range(start, total):
        for group in opts["opt"].param_groups:
            group["lr"] = settings.lr * _lr_factor(step, settings)
        idx = torch.randint(0, latents.shape[0], (min(settings.batch_size, latents.shape[0]),), generator=sampler)
        if step < settings.warmup_steps:
            x = normalised[idx]
            z_tilde, likelihoods = coder.entropy_bottleneck(coder.g_a(x), training=True)
            distortion = gain * (coder.g_s(z_tilde) - x).square().mean(1)
        else:
            phi_tilde, likelihoods = coder(latents[idx], "noise")
            sampled, target = model.subsample(item_coords(coords, idx), features[idx], sampler, max_points)
            distortion = model.item_loss(model.decode_raw(sampled, phi_tilde), target)
        bpp = -torch.log2(likelihoods).sum(1) / points
        loss = (bpp + lam * DISTORTION_SCALE * distortion).mean()
        opts["opt"].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main, 1.0)
        opts["opt"].step()
        aux_loss = coder.aux_loss()
        opts["aux"].zero_grad(set_to_none=True)
        aux_loss.backward()
        opts["aux"].step()
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(bpp=f"{bpp.mean().item():.3f}", dist=f"{distortion.mean().item():.2e}")
        if checkpoint is not None and (step + 1) % settings.checkpoint_every == 0 and step + 1 < total:
            checkpoint.save(coder, opts, sampler, step + 1, key)
    bar.close()
    coder.eval()
    return coder, start


# --- the command ------------------------------------------------------------------------------


def _unchanged(folder: Path, stem: str, settings: dict) -> dict | None:
    info = read_level_json(folder / f"{stem}.json")
    if info is not None and info.get("settings") == settings and (folder / f"{stem}.safetensors").is_file():
        return info
    return None


def fit_codecs(model_dir: str | Path, data: str | Path | None = None, settings: FitSettings | None = None,
               progress: bool = True) -> FitResult:
    """Fit (or skip / resume) every requested quality level of the model in ``model_dir``."""
    settings = settings or FitSettings()
    settings.validate()
    loaded = load_model(model_dir)
    model = loaded.model.eval()
    cfg, coords, features = _load_training_items(loaded, data, settings.max_items)
    data_key = json.loads(json.dumps(dataclasses.asdict(cfg), default=list))
    data_key["path"] = str(Path(data_key["path"]).resolve())
    latents = _cached_latents(loaded, data_key, coords, features, settings, progress)
    folder = codec_dir(loaded.directory)
    result = FitResult(loaded.directory, int(latents.shape[0]), int(latents.shape[1]))
    held_out = _held_out(loaded, cfg, settings, progress)
    evaluated_on = {"split": held_out.split, "signals": held_out.items.num_files,
                    "quality": "whole-signal PSNR before the container and the writer's rounding"}
    # a codec stores the coordinates of one item; items with their own (scenes) carry them instead
    level_coords = coords if coords.dim() == 2 else coords.new_zeros(0, coords.shape[-1])

    for bits in sorted(set(settings.bits)):
        stem, started = uniform_stem(bits), time.perf_counter()
        key = {"bits": bits, "clip": settings.clip, "data": data_key}
        info = _unchanged(folder, stem, key)
        if info is not None:
            result.levels.append(LevelResult(stem, "uniform", "skipped", info.get("metrics", {}), 0.0))
            continue
        codec = UniformCodec.fit(latents, bits, settings.clip)
        metrics = evaluate_codec(model, codec, held_out)
        save_level(loaded, stem, codec, level_coords, {"bits": bits, "clip": settings.clip, "settings": key,
                                                 "metrics": metrics, "evaluated_on": evaluated_on,
                                                 "items": int(latents.shape[0])})
        result.levels.append(LevelResult(stem, "uniform", "fitted", metrics, time.perf_counter() - started))

    for lam in sorted(set(settings.lambdas)):
        stem, started = learned_stem(lam), time.perf_counter()
        dim = latents.shape[1]
        arch = {"width": settings.width or max(2 * dim, 64), "blocks": settings.blocks, "z_dim": settings.z_dim or dim}
        key = {"lambda": lam, "steps": settings.steps, "warmup_steps": settings.warmup_steps, "lr": settings.lr,
               "final_lr_fraction": settings.final_lr_fraction, "max_points": settings.max_points,
               "aux_lr": settings.aux_lr,
               "batch_size": settings.batch_size, "seed": settings.seed, "arch": arch, "data": data_key}
        info = _unchanged(folder, stem, key)
        if info is not None:
            result.levels.append(LevelResult(stem, "learned", "skipped", info.get("metrics", {}), 0.0))
            continue
        checkpoint = _Checkpoint(folder, stem)
        coder, start = train_transform_coder(model, coords, latents, features, lam, settings, checkpoint, key,
                                             progress, desc=f"codec lambda={lam:g}")
        codec = coder.to_codec()
        metrics = evaluate_codec(model, codec, held_out)
        save_level(loaded, stem, codec, level_coords, {"lambda": lam, "arch": arch, "settings": key, "metrics": metrics,
                                                 "evaluated_on": evaluated_on, "items": int(latents.shape[0]),
                                                 "lambda_convention": "bpp + lambda * 255^2 * distortion"})
        checkpoint.remove()
        status = "resumed" if start else "fitted"
        result.levels.append(LevelResult(stem, "learned", status, metrics, time.perf_counter() - started))
    return result


__all__ = ["DEFAULT_BITS", "DEFAULT_LAMBDAS", "FitResult", "FitSettings", "LevelResult",
           "distortion_gain", "evaluate_codec", "fit_codecs", "train_transform_coder"]
