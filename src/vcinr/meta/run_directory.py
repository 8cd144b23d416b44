"""The files of a meta-training run's directory besides the model: checkpoint, metrics log, recorded config.

Kept apart from the outer loop (:mod:`vcinr.meta.training`) because they are about
surviving kills and resumes, not about learning: one atomically written checkpoint, a
metrics log that a resume cuts back to its step and that is read as untrusted input, and the
recorded config a resume must match.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from vcinr.config import Config, with_defaults
from vcinr.errors import ConfigError, ModelError
from vcinr.limits import MAX_METRICS_BYTES, open_regular, parse_json, read_json
from vcinr.meta.averaging import WeightAverage
from vcinr.meta.metasgd import MetaINR
from vcinr.storage import atomic_write_bytes, load_state, save_state

CHECKPOINT_FILE, METRICS_FILE = "checkpoint.safetensors", "metrics.jsonl"
# How far the final validation may fall below the run's best before we call it a divergence:
# second-order meta-learning can leave a good region and settle far below it without any
# non-finite number (VC-INR at a high outer learning rate, paper appendix E.1).
DIVERGED_DROP = {"psnr": 1.0, "accuracy": 0.02}


class Checkpoint:
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
        groups = [{k: v for k, v in g.items() if k != "params"} for g in opt["param_groups"]]
        scalars = dict(scalars, param_groups=groups)
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
            scalars.update(step=int(scalars["step"]), elapsed=float(scalars["elapsed"]),
                           initial=dict(scalars["initial"]))
        except (SafetensorError, KeyError, TypeError, RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"cannot resume from {self.path}: damaged or from another vcinr version "
                             f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                             "delete it to start over") from None
        return scalars


def check_same_run(out: Path, config: Config, write: bool, resuming: bool) -> None:
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


def _same_run(recorded: Any, current: dict[str, Any]) -> bool:
    """Whether a recorded config (any JSON: the file may be damaged) differs from ``current`` only as a resume may."""
    if not isinstance(recorded, dict) or not isinstance(recorded.get("train"), dict):
        return False
    # how long, where, and how often to validate or checkpoint: none of these changes a step's result
    ignore = ("steps", "time_budget", "device", "eval_every", "checkpoint_every")

    def resumable(config: dict[str, Any]) -> dict[str, Any]:
        full = with_defaults(config)
        return {**full, "train": {k: v for k, v in full["train"].items() if k not in ignore}}

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


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint we resume from (and lines that are not records).

    Anything at the path but a regular file is refused here: a FIFO would block the next log line.
    """
    if not os.path.lexists(path):
        return
    kept = [line + b"\n" for line, record in _metric_records(path)
            if _is_number(record.get("step", 0)) and record.get("step", 0) <= step]
    atomic_write_bytes(path, b"".join(kept))


def logged_losses(path: Path) -> list[tuple[int, float]]:
    """``(step, training loss)`` of every step logged in ``metrics.jsonl``; empty without a log.

    A record's step counts the update its loss led to: the loss is that of the state one step before.
    """
    if not os.path.lexists(path):
        return []
    return [(int(r["step"]) - 1, float(r["loss"])) for _, r in _metric_records(path)
            if _is_number(r.get("step")) and _is_number(r.get("loss"))]


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


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Append one record as a line: a kill mid-write leaves a cut line, which reading skips."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
