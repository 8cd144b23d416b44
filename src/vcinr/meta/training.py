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
weights are never written.

Under ``torchrun`` the same loop trains data-parallel (:mod:`vcinr.meta.distributed`):
every rank draws the same global batch of ``train.batch_size`` items and adapts its own
contiguous shard of it, gradients are averaged before the optimiser step, evaluation is
split between the ranks, and only rank 0 writes metrics, checkpoints and the model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
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
from safetensors import SafetensorError
from tqdm import tqdm

from vcinr.backend import keep_freed_memory
from vcinr.config import Config, TrainConfig
from vcinr.data import ItemSet, load_items
from vcinr.errors import ConfigError, Interrupted, ModelError
from vcinr.limits import MAX_METRICS_BYTES, open_regular, parse_json, read_json
from vcinr.meta.averaging import WeightAverage
from vcinr.meta.distributed import DistContext, distributed_context, world_size
from vcinr.meta.metasgd import MetaINR, item_coords
from vcinr.meta.model import WEIGHTS_FILE, ItemSpec, build_model, load_model, save_model
from vcinr.meta.performance import compile_requested, meta_backward, meta_loss_function, step_workers
from vcinr.meta.quality import SignalQuality
from vcinr.modalities import get_modality
from vcinr.storage import atomic_write_bytes, fingerprint_file, load_state, save_state

CHECKPOINT_FILE, METRICS_FILE = "checkpoint.safetensors", "metrics.jsonl"
MAX_BAD_STEPS = 10  # consecutive non-finite steps before a run is declared diverged
# How far the final validation may fall below the run's best before we call it a divergence:
# second-order meta-learning can leave a good region and settle far below it without any
# non-finite number (VC-INR at a high outer learning rate, paper appendix E.1).
DIVERGED_DROP = {"psnr": 1.0, "accuracy": 0.02}


def flat_items(items: ItemSet, query: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates ``(N, in_dim)`` and features ``(num_items, N, out_dim)`` with the grid flattened.

    Per-item coordinates (scenes) stay per item, ``(num_items, N, in_dim)``; ``query`` gives
    the items' held-out query points instead.
    """
    coords, features = (items.query_coords, items.query_features) if query else (items.coords, items.features)
    if coords.dim() == features.dim():
        coords = coords.reshape(features.shape[0], -1, coords.shape[-1])
    else:
        coords = coords.reshape(-1, coords.shape[-1])
    return coords, features.reshape(features.shape[0], -1, features.shape[-1])


def whole_signals(items: ItemSet, max_items: int) -> int:
    """How many leading items make up whole signals, about ``max_items`` of them (at least one signal).

    Patched signals are evaluated whole, never cut: the count stops at the last signal that
    ends within ``max_items`` items.
    """
    files = items.files()
    if files.numel() == 0:
        return 0
    if max_items >= files.numel():
        return int(files.numel())
    ends = torch.nonzero(files[1:] != files[:-1]).flatten() + 1  # where a new signal starts
    ends = torch.cat([ends, torch.tensor([files.numel()])])
    within = ends[ends <= max_items]
    return int(within[-1]) if within.numel() else int(ends[0])


def evaluate(model: MetaINR, items: ItemSet, max_items: int, batch_size: int, steps: int | None = None,
             device: str = "cpu", ctx: DistContext | None = None) -> dict[str, float]:
    """Quality after ``steps`` inner steps of the first whole signals of ``items`` (about ``max_items`` items).

    Real-valued data: ``psnr`` is the PSNR of each whole signal (one MSE over all its points,
    patches merged, edge padding excluded; :mod:`vcinr.meta.quality`), averaged over signals,
    on clamped [0, 1] predictions before quantisation; patched data adds the per-patch mean
    as ``psnr_patch_mean`` and audio adds ``snr``.  Occupancies: ``accuracy``, the fraction of
    voxels right.  Items with query points (scenes' held-out views) are scored on those.
    ``loss`` is the mean per-item training loss.  Under ``torchrun`` (``ctx``) the ranks take
    turns over the batches and add up their totals.
    """
    ctx = ctx or DistContext(device=device)
    coords, features = flat_items(items)
    coords = coords.to(device)
    query = flat_items(items, query=True) if items.query_features is not None else None
    count = whole_signals(items, max_items)
    files = items.files()
    mask = items.point_mask.flatten(1) if items.point_mask is not None else None
    quality = SignalQuality(int(files[count - 1]) + 1 if count else 0, model.loss,
                            get_modality(items.modality).snr_centre)
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


def item_spec(config: Config, items: ItemSet) -> ItemSpec:
    modality = get_modality(items.modality)
    patched = config.data.patch is not None
    return ItemSpec(
        modality=items.modality,
        in_dim=items.coords.shape[-1],
        out_dim=items.features.shape[-1],
        loss=modality.loss,
        item_shape=tuple(items.features.shape[1:-1]),
        coord_range=tuple(modality.coord_range) if patched and modality.coord_range is not None else None,
        observation=items.observation,
        max_points=items.max_points,
    )


@dataclass
class TrainResult:
    steps: int
    initial: dict[str, float]
    final: dict[str, float]
    seconds: float
    fingerprint: str


class _Checkpoint:
    """Model, optimiser and sampler RNG as tensors, step and scalars as JSON metadata, in one file.

    One safetensors file written atomically (:func:`vcinr.storage.save_state`): a SIGKILL
    at any moment leaves the previous checkpoint or the new one, never a mixed pair.
    Nothing is pickled.
    """

    def __init__(self, directory: Path):
        self.path = directory / CHECKPOINT_FILE

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, model: MetaINR, optimizer: torch.optim.Optimizer, sampler: torch.Generator,
             scalars: dict[str, Any], average: WeightAverage | None) -> None:
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise ModelError(f"training produced non-finite weights by step {scalars['step']}; not saved "
                             "(the last good checkpoint is kept)")
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        opt = optimizer.state_dict()
        for pid, pstate in opt["state"].items():
            for key, value in pstate.items():
                tensors[f"opt.{pid}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        tensors["rng.sampler"] = sampler.get_state()
        if average is not None:
            tensors.update(average.state_tensors())
        scalars = dict(scalars, param_groups=[{k: v for k, v in g.items() if k != "params"} for g in opt["param_groups"]])
        save_state(self.path, tensors, scalars)

    def load(self, model: MetaINR, optimizer: torch.optim.Optimizer, sampler: torch.Generator,
             average: WeightAverage | None) -> dict[str, Any]:
        try:
            tensors, scalars = load_state(self.path)
            model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            opt = optimizer.state_dict()
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in tensors.items():
                if key.startswith("opt."):
                    _, pid, name = key.split(".", 2)
                    state.setdefault(int(pid), {})[name] = value
            for group, saved in zip(opt["param_groups"], scalars["param_groups"]):
                group.update({k: v for k, v in saved.items() if k in group})
            optimizer.load_state_dict({"state": state, "param_groups": opt["param_groups"]})
            sampler.set_state(tensors["rng.sampler"])
            if average is not None:
                average.load_state_tensors(tensors)
            scalars.update(step=int(scalars["step"]), elapsed=float(scalars["elapsed"]), initial=dict(scalars["initial"]))
        except (SafetensorError, KeyError, TypeError, RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"cannot resume from {self.path}: damaged or from another vcinr version "
                             f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                             "delete it to start over") from None
        return scalars


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


def _check_same_run(out: Path, config: Config, write: bool, resuming: bool) -> None:
    """Refuse to resume a checkpoint of a run with another config (``write``: record this one).

    Without a checkpoint there is nothing to resume (a run that failed before its first
    checkpoint, e.g. on a too-large config), so the directory is simply started afresh.
    """
    saved = out / "train_config.json"
    current = json.dumps(config.to_dict(), sort_keys=True, default=list)
    if resuming and os.path.lexists(saved):  # anything there but a regular file is refused by read_json
        if not _same_run(read_json(saved, "recorded run config", ModelError), json.loads(current)):
            raise ConfigError(f"{out} holds a run with a different config; use another --out or delete it")
    elif write:
        atomic_write_bytes(saved, current.encode())


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


def _same_run(recorded: Any, current: dict[str, Any]) -> bool:
    """Whether a recorded config (any JSON: the file may be damaged) differs from ``current`` only as a resume may."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("train"), dict):
        return False
    ignore = ("steps", "time_budget", "device")
    defaults = dataclasses.asdict(TrainConfig())  # options added since a run started were at their defaults
    resumable = lambda c: {**c, "train": {k: v for k, v in {**defaults, **c["train"]}.items()  # noqa: E731
                                          if k not in ignore}}
    return resumable(recorded) == resumable(current)


def _metric_records(path: Path) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """The lines of ``metrics.jsonl`` that hold a record, each with its record.

    The log is read like any file vcinr did not just write (at most ``MAX_METRICS_BYTES``, a
    regular file, every line parsed within :func:`vcinr.limits.parse_json`'s bounds); a line
    cut short by a kill, or damaged, is skipped: a tampered log used to be a traceback on
    resume or after the last step.
    """
    with open_regular(path, MAX_METRICS_BYTES, "metrics log", ModelError) as f:
        for line in f:
            try:
                record = parse_json(line, "metrics line", ValueError)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield line.rstrip(b"\n"), record


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)  # parse_json gives no NaN/inf


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint we resume from (and lines that are not records).

    Anything at the path but a regular file is refused here: a FIFO would block the next log line.
    """
    if not os.path.lexists(path):
        return
    kept = [line + b"\n" for line, record in _metric_records(path)
            if _is_number(record.get("step", 0)) and record.get("step", 0) <= step]
    atomic_write_bytes(path, b"".join(kept))


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


def train(config: Config, out: str | Path, progress: bool = True) -> TrainResult:
    """Meta-train (or resume) a model into ``out``; see the module docstring."""
    if config.data is None:
        raise ConfigError("the config has no data section; pass --data PATH or add one")
    device = config.train.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but no CUDA device is available")
    world = world_size()
    if config.train.batch_size % world:
        raise ConfigError(f"train.batch_size {config.train.batch_size} must be a multiple of the number of "
                          f"processes ({world})")
    with distributed_context(device) as ctx:
        return _train(config, Path(out), progress, ctx)


def _train(config: Config, out: Path, progress: bool, ctx: DistContext) -> TrainResult:
    t, device = config.train, ctx.device
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    keep_freed_memory()
    torch.manual_seed(t.seed)

    train_items, test_items = load_items(config.data, "train"), load_items(config.data, "test")
    spec = item_spec(config, train_items)
    model = build_model(config, spec).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.outer_lr)
    sampler = torch.Generator().manual_seed(t.seed)
    checkpoint = _Checkpoint(out)
    metrics_path = out / METRICS_FILE
    ctx.barrier()  # rank 0 has created ``out``
    _check_same_run(out, config, write=ctx.is_main, resuming=checkpoint.exists())
    log = (lambda record: _log(metrics_path, record)) if ctx.is_main else (lambda record: None)

    if not checkpoint.exists() and t.init_from is not None:
        _warm_start(model, Path(t.init_from))
    average = WeightAverage(model, t.ema_decay) if t.ema_decay is not None else None
    validated = average.model if average is not None else model  # what validation scores and the run writes
    evaluate_now = lambda: evaluate(validated, test_items, t.eval_items, t.batch_size, device=device, ctx=ctx)  # noqa: E731
    if checkpoint.exists():
        scalars = checkpoint.load(model, optimizer, sampler, average)
        step, elapsed, initial = scalars["step"], scalars["elapsed"], scalars["initial"]
        cpu_elapsed = float(scalars.get("cpu", 0.0))  # absent in checkpoints of older versions
        if ctx.is_main:
            _truncate_metrics(metrics_path, step)
    else:
        ctx.broadcast_parameters(model)
        step, elapsed, cpu_elapsed = 0, 0.0, 0.0
        if ctx.is_main:
            metrics_path.unlink(missing_ok=True)  # left by a run that failed before its first checkpoint
        initial = evaluate_now()
        log({"step": 0, **{f"val_{k}": v for k, v in initial.items()}})
    ctx.barrier()  # every rank has read the checkpoint before rank 0 writes the next one

    params = list(model.parameters())
    meta_loss = meta_loss_function(model)
    workers = step_workers(device, compile_requested())
    coords, features = flat_items(train_items)
    coords = coords.to(device)
    shard = ctx.shard(t.batch_size)
    bad_steps, interrupted = 0, False
    started = time.perf_counter() - elapsed
    cpu_started = time.process_time() - cpu_elapsed  # CPU seconds of this process, all threads
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
            for group in optimizer.param_groups:
                group["lr"] = outer_lr_at(t, step)
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
            if ctx.is_main and (step % t.checkpoint_every == 0 or step == t.steps):
                checkpoint.save(model, optimizer, sampler,
                                {"step": step, "elapsed": time.perf_counter() - started,
                                 "cpu": time.process_time() - cpu_started, "initial": initial}, average)
    bar.close()
    elapsed = time.perf_counter() - started
    if ctx.is_main:
        checkpoint.save(model, optimizer, sampler, {"step": step, "elapsed": elapsed,
                                                    "cpu": time.process_time() - cpu_started, "initial": initial},
                        average)
    if interrupted:
        ctx.barrier()  # the checkpoint is complete before any rank exits
        raise Interrupted(f"stopped at step {step} of {t.steps}; checkpoint saved in {out}, "
                          "run the same command again to resume")
    final = evaluate_now()
    fingerprint = save_model(validated, config, spec, out) if ctx.is_main else ""
    ctx.barrier()  # the model is complete before any rank returns
    if not ctx.is_main:
        fingerprint = fingerprint_file(out / WEIGHTS_FILE)
    return TrainResult(step, initial, final, elapsed, fingerprint)


def divergence_warning(out: str | Path, final: dict[str, float]) -> str | None:
    """A hint when the final validation is far below the best one in ``metrics.jsonl``, else ``None``.

    The written model is always the last one (the validation items are the test split, so
    picking the best by them would report a selected, optimistic figure); this only says
    that the run got worse and what to change.
    """
    metric = "psnr" if "psnr" in final else "accuracy"
    path = Path(out) / METRICS_FILE
    if not path.is_file():
        return None
    try:
        peaks = [(r[f"val_{metric}"], r["step"]) for _, r in _metric_records(path)
                 if _is_number(r.get(f"val_{metric}")) and _is_number(r.get("step"))]
    except ModelError:  # a log replaced by something else than vcinr's: no hint rather than a failed run
        return None
    if not peaks:
        return None
    best, step = max(peaks)
    if best - final[metric] <= DIVERGED_DROP[metric]:
        return None
    unit = " dB" if metric == "psnr" else ""
    return (f"validation {metric} peaked at {best:.2f}{unit} (step {step}) and ended at {final[metric]:.2f}{unit}: "
            "meta-learning probably diverged; try a lower outer learning rate, e.g. --set train.outer_lr=3e-4")


def _log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
