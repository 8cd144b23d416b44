"""The outer loop of Algorithm 1: meta-train θ, the conditioning network, φ0 and step sizes.

Every step samples a batch of items, adapts their latents with k Meta-SGD steps, and
updates the shared parameters with Adam on the post-adaptation loss.  The run lives in one
output directory: re-running with the same directory resumes from its last checkpoint
(model, optimiser, step and sampler state, in one atomic file), so a killed run loses at
most ``checkpoint_every`` steps, and Ctrl-C (SIGINT) loses none: the loop finishes its
step, writes a checkpoint and stops with :class:`vcinr.errors.Interrupted`.  The only other
randomness, MSCN's gate noise (and a scene's rays), is seeded from ``(seed, step, rank)`` at
every step, so it needs no state to resume.  On CPU each step splits its batch over the
process's threads (:func:`vcinr.meta.performance.meta_backward`), each part drawing its noise
from a generator seeded from that seed.

A step whose loss or gradient is not finite (second-order meta-learning can diverge, paper
appendix E.1) is skipped, not applied, and logged to ``metrics.jsonl``; ``MAX_BAD_STEPS`` of
them in a row stop the run as diverged, keeping the last good checkpoint.  Non-finite
weights are never written.  A finite jump of the loss's running median (``train.spike_factor``)
rolls the run back to its in-memory state of 100–200 steps earlier at half the outer lr
(:mod:`vcinr.meta.rollback`).

Under ``torchrun`` the same loop trains data-parallel (:mod:`vcinr.meta.distributed`):
every rank draws the same global batch of ``train.batch_size`` items and adapts its own
contiguous shard of it, gradients are averaged before the optimiser step, evaluation is
split between the ranks, and only rank 0 writes metrics, checkpoints and the model.

The loop is modality-agnostic: it receives its items and what it must know about them
(:class:`TrainingData`) from its caller, :func:`vcinr.training.train`, which loads a config's
data set with its modality plug-in; and it changes no process-wide setting and reads no
environment switch: compiling the meta-step is the caller's explicit choice, as is keeping
freed memory (:func:`vcinr.backend.keep_freed_memory`, which the ``vcinr train`` command asks for).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vcinr.config import Config, TrainConfig
from vcinr.errors import ConfigError, Interrupted, ModelError
from vcinr.meta.averaging import WeightAverage
from vcinr.meta.distributed import DistContext, distributed_context, world_size
from vcinr.meta.items import ItemSet, flat_items, whole_signals
from vcinr.meta.metasgd import MetaINR, item_coords
from vcinr.meta.model import WEIGHTS_FILE, ItemSpec, build_model, load_model, save_model
from vcinr.meta.performance import meta_backward, meta_loss_function, step_workers
from vcinr.meta.quality import SignalQuality
from vcinr.meta.rollback import SpikeGuard
from vcinr.meta.run_directory import (METRICS_FILE, Checkpoint, append_metrics, check_same_run, logged_losses,
                                      truncate_metrics)
from vcinr.storage import fingerprint_file

MAX_BAD_STEPS = 10  # consecutive non-finite steps before a run is declared diverged


def evaluate(model: MetaINR, items: ItemSet, max_items: int, batch_size: int, steps: int | None = None,
             device: str = "cpu", ctx: DistContext | None = None,
             snr_centre: float | None = None) -> dict[str, float]:
    """Quality after ``steps`` inner steps of the first whole signals of ``items`` (about ``max_items`` items).

    Real-valued data: ``psnr`` is the PSNR of each whole signal (one MSE over all its points,
    patches merged, edge padding excluded; :mod:`vcinr.meta.quality`), averaged over signals,
    on clamped [0, 1] predictions before quantisation; patched data adds the per-patch mean
    as ``psnr_patch_mean``, and ``snr`` is added where ``snr_centre`` (the feature value of
    silence, the modality's :attr:`~vcinr.modalities.base.Modality.snr_centre`) is given.
    Occupancies: ``accuracy``, the fraction of voxels right.  Items with query points (scenes'
    held-out views) are scored on those.  ``loss`` is the mean per-item training loss.  Under
    ``torchrun`` (``ctx``) the ranks take turns over the batches and add up their totals.
    """
    ctx = ctx or DistContext(device=device)
    coords, features = flat_items(items)
    coords = coords.to(device)
    query = flat_items(items, query=True) if items.query_features is not None else None
    count = whole_signals(items, max_items)
    files = items.files()
    mask = items.point_mask.flatten(1) if items.point_mask is not None else None
    quality = SignalQuality(int(files[count - 1]) + 1 if count else 0, model.loss, snr_centre)
    was_training = model.training
    model.eval()
    loss_total = torch.zeros(2, dtype=torch.float64)  # loss, items
    with torch.no_grad():
        for start in range(0, count, batch_size)[ctx.rank :: ctx.world]:
            batch = slice(start, min(start + batch_size, count))
            target, points = features[batch].to(device), item_coords(coords, batch)
            state = model.adapt(points, target, steps=steps)
            if query is not None:  # score held-out points (novel views), not those adapted on
                points, target = query[0][batch].to(device), query[1][batch].to(device)
            pred = model.predict(points, state)
            loss_total += torch.tensor([float(model.item_loss(pred, target).sum()), float(target.shape[0])],
                                       dtype=torch.float64)
            quality.add(pred, target, files[batch], mask[batch] if mask is not None and query is None else None)
    totals = ctx.sum(torch.cat([loss_total, quality.totals()]).to(device)).cpu()
    quality.load_totals(totals[2:])
    model.train(was_training)
    return {"loss": float(totals[0] / totals[1]), **quality.result()}


@dataclass(frozen=True)
class TrainingData:
    """A run's items and what the meta-learner must know about them, prepared by the caller.

    The outer loop never asks a modality plug-in: the caller (:func:`vcinr.training.load_training_data`
    for a config's data section) says what the items are (``spec``: their geometry and loss)
    and what silence is for SNRs (``snr_centre``), so this package stays modality-agnostic.

    Attributes:
        train: the items meta-training samples its batches from.
        test: the held-out items validation scores.
        spec: the items' geometry, written with the model.
        snr_centre: the feature value of silence (audio), ``None`` where an SNR means nothing.
    """

    train: ItemSet
    test: ItemSet
    spec: ItemSpec
    snr_centre: float | None = None


@dataclass
class TrainResult:
    steps: int
    initial: dict[str, float]
    final: dict[str, float]
    seconds: float
    fingerprint: str


@contextmanager
def _sigint_requests_stop() -> Iterator[threading.Event]:
    """While active, the first Ctrl-C (SIGINT) only sets the returned event; a second one aborts.

    The training loop polls the event between steps, so it can write a checkpoint before it
    stops. Outside the main thread (where Python cannot install handlers) this is a no-op.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.getsignal(signal.SIGINT)

    def request(signum: int, frame: Any) -> None:
        stop.set()
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C interrupts at once

    signal.signal(signal.SIGINT, request)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _warm_start(model: MetaINR, directory: Path) -> None:
    """Copy a trained model's weights into ``model`` (``train.init_from``); the architectures must match."""
    source = load_model(directory).model
    mine, theirs = model.state_dict(), source.state_dict()
    mismatch = sorted(k for k in mine.keys() | theirs.keys()
                      if k not in mine or k not in theirs or mine[k].shape != theirs[k].shape)
    if mismatch:
        raise ConfigError(f"train.init_from {directory}: its network differs from this config's "
                          f"({len(mismatch)} tensors, e.g. {mismatch[0]})")
    model.load_state_dict(theirs)


def outer_lr_at(t: TrainConfig, step: int) -> float:
    """The outer learning rate of outer step ``step`` (0-based): warm-up, then constant or cosine decay."""
    if step < t.warmup_steps:
        return t.outer_lr * (step + 1) / t.warmup_steps
    if t.decay == "none":
        return t.outer_lr
    progress = min(1.0, (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps))
    floor = t.final_lr_fraction
    return t.outer_lr * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _step_seed(seed: int, step: int, rank: int) -> int:
    """The torch RNG seed of outer step ``step`` on ``rank`` (MSCN's gate noise, scenes' rays)."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0])


def meta_train(config: Config, data: TrainingData, out: str | Path, progress: bool = True,
               compile_: bool = False) -> TrainResult:
    """Meta-train (or resume) a model of ``config`` on ``data`` into ``out``; see the module docstring.

    ``compile_``: run the meta-step through ``torch.compile``
    (:func:`vcinr.meta.performance.meta_loss_function`), the caller's choice since it costs a
    minute of warm-up per process and pays back only over long runs.
    """
    device = config.train.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but no CUDA device is available")
    world = world_size()
    if config.train.batch_size % world:
        raise ConfigError(f"train.batch_size {config.train.batch_size} must be a multiple of the number of "
                          f"processes ({world})")
    with distributed_context(device) as ctx:
        return _train(config, data, Path(out), progress, compile_, ctx)


def _train(config: Config, data: TrainingData, out: Path, progress: bool, compile_: bool,
           ctx: DistContext) -> TrainResult:
    t, device = config.train, ctx.device
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(t.seed)

    model = build_model(config, data.spec).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.outer_lr)
    sampler = torch.Generator().manual_seed(t.seed)
    checkpoint = Checkpoint(out)
    metrics_path = out / METRICS_FILE
    ctx.barrier()  # rank 0 has created ``out``
    check_same_run(out, config, write=ctx.is_main, resuming=checkpoint.exists())
    log = (lambda record: append_metrics(metrics_path, record)) if ctx.is_main else (lambda record: None)

    if not checkpoint.exists() and t.init_from is not None:
        _warm_start(model, Path(t.init_from))
    average = WeightAverage(model, t.ema_decay) if t.ema_decay is not None else None
    validated = average.model if average is not None else model  # what validation scores and the run writes
    evaluate_now = lambda: evaluate(validated, data.test, t.eval_items, t.batch_size,  # noqa: E731
                                    device=device, ctx=ctx, snr_centre=data.snr_centre)
    if checkpoint.exists():
        scalars = checkpoint.load(model, optimizer, sampler, average)
        step, elapsed, initial = scalars["step"], scalars["elapsed"], scalars["initial"]
        cpu_elapsed = float(scalars.get("cpu", 0.0))  # absent in checkpoints of older versions
        lr_scale, rollbacks = float(scalars.get("lr_scale", 1.0)), int(scalars.get("rollbacks", 0))
        if ctx.is_main:
            truncate_metrics(metrics_path, step)
    else:
        ctx.broadcast_parameters(model)
        step, elapsed, cpu_elapsed = 0, 0.0, 0.0
        lr_scale, rollbacks = 1.0, 0
        if ctx.is_main:
            metrics_path.unlink(missing_ok=True)  # left by a run that failed before its first checkpoint
        initial = evaluate_now()
        log({"step": 0, **{f"val_{k}": v for k, v in initial.items()}})
    ctx.barrier()  # every rank has read the checkpoint before rank 0 writes the next one

    params = list(model.parameters())
    meta_loss = meta_loss_function(model, compile_)
    workers = step_workers(device, compile_)
    coords, features = flat_items(data.train)
    coords = coords.to(device)
    shard = ctx.shard(t.batch_size)
    bad_steps, interrupted = 0, False
    guard = SpikeGuard(t.spike_factor) if t.spike_factor is not None else None
    if guard is not None and step > 0:  # resumed: the guard watches from the first step on
        guard.resume(step, logged_losses(metrics_path), model, optimizer, sampler, average)
    started = time.perf_counter() - elapsed
    cpu_started = time.process_time() - cpu_elapsed  # CPU seconds of this process, all threads
    scalars_now = lambda: {"step": step, "elapsed": time.perf_counter() - started,  # noqa: E731
                           "cpu": time.process_time() - cpu_started, "initial": initial,
                           "lr_scale": lr_scale, "rollbacks": rollbacks}
    bar = tqdm(total=t.steps, initial=step, disable=not (progress and ctx.is_main), desc="meta-train", unit="step")
    model.train()
    with _sigint_requests_stop() as stop_requested:
        while step < t.steps:
            interrupted = ctx.any(stop_requested.is_set())  # every rank stops at the same step
            if interrupted or (t.time_budget is not None and ctx.any(time.perf_counter() - started >= t.time_budget)):
                break
            idx = torch.randint(0, features.shape[0], (t.batch_size,), generator=sampler)  # the same on every rank
            target = features[idx[shard]].to(device)
            torch.manual_seed(_step_seed(t.seed, step, ctx.rank))
            optimizer.zero_grad(set_to_none=True)
            local_loss = meta_backward(meta_loss, params, item_coords(coords, idx[shard]), target, workers,
                                       second_order=config.meta.second_order, checkpointing=config.meta.checkpointing)
            loss = ctx.mean(local_loss)  # the global batch's loss, the same on every rank
            finite = bool(torch.isfinite(loss))
            if finite:
                ctx.average_gradients(params)
                norm = torch.nn.utils.clip_grad_norm_(params, t.grad_clip if t.grad_clip else math.inf)
                finite = bool(torch.isfinite(norm))
            if not finite:
                bad_steps += 1
                log({"step": step, "event": "non-finite loss or gradient; step skipped"})
                if bad_steps >= MAX_BAD_STEPS:
                    raise ModelError(f"training diverged: {bad_steps} non-finite steps in a row at step {step}; "
                                     "lower train.outer_lr or meta.lr_clip (last good checkpoint kept)")
                continue
            bad_steps = 0
            if guard is not None:
                guard.observe(step, loss.item())
                if guard.spiked():
                    rollbacks += 1
                    if rollbacks > t.max_rollbacks:
                        raise ModelError(f"training diverged: the loss jumped {rollbacks} times, the last at step "
                                         f"{step}; lower train.outer_lr (last good checkpoint kept)")
                    snapshot = guard.rollback()
                    snapshot.restore(model, optimizer, sampler, average)
                    jumped_at, step, lr_scale = step, snapshot.step, lr_scale / 2
                    bar.n = step
                    if ctx.is_main:
                        truncate_metrics(metrics_path, step)
                        checkpoint.save(model, optimizer, sampler, scalars_now(), average)
                    log({"step": step, "event": f"loss median jumped at step {jumped_at}; rolled back to step "
                                                f"{step}, outer lr now x{lr_scale:g}"})
                    continue
            for group in optimizer.param_groups:
                group["lr"] = outer_lr_at(t, step) * lr_scale
            optimizer.step()
            if average is not None:
                average.update(model)
            step += 1
            bar.update(1)
            record: dict[str, Any] = {"step": step, "loss": loss.item(), "time": time.perf_counter() - started,
                                      "cpu": time.process_time() - cpu_started, "lr": optimizer.param_groups[0]["lr"]}
            quality = model.loss.training_quality(loss.detach())
            if quality is not None:
                record[model.loss.metric] = quality.item()
            if step % t.eval_every == 0 or step == t.steps:
                record.update({f"val_{k}": v for k, v in evaluate_now().items()})
                bar.set_postfix({k: round(v, 3) for k, v in record.items() if k.startswith("val_")})
            log(record)
            if guard is not None:
                guard.keep(step, model, optimizer, sampler, average)
            if ctx.is_main and (step % t.checkpoint_every == 0 or step == t.steps):
                checkpoint.save(model, optimizer, sampler, scalars_now(), average)
    bar.close()
    elapsed = time.perf_counter() - started
    if ctx.is_main:
        checkpoint.save(model, optimizer, sampler, scalars_now(), average)
    if interrupted:
        ctx.barrier()  # the checkpoint is complete before any rank exits
        raise Interrupted(f"stopped at step {step} of {t.steps}; checkpoint saved in {out}, "
                          "run the same command again to resume")
    final = evaluate_now()
    fingerprint = save_model(validated, config, data.spec, out) if ctx.is_main else ""
    ctx.barrier()  # the model is complete before any rank returns
    if not ctx.is_main:
        fingerprint = fingerprint_file(out / WEIGHTS_FILE)
    return TrainResult(step, initial, final, elapsed, fingerprint)
