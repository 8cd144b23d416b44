"""Everything vcinr writes to disk goes through here: atomic writes, safetensors, checkpoints, fingerprints.

One writer (:func:`atomic_path`) serves model weights, codec levels, checkpoints, ``.vci``
files, decoded outputs of every modality (a scene's folder included), results and plots, so
they all get the same guarantees: a crash, SIGKILL or full disk leaves the previous file or
the new one, never half a file; the new file is fsynced and so is the rename; its mode is
0666 minus the umask, like any file a program writes.

Nothing is ever unpickled: weights and checkpoints are safetensors, everything else JSON.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from vcinr.errors import ModelError, shown
from vcinr.limits import MAX_WEIGHTS_BYTES, open_regular, parse_json, sha256_bounded

STATE_KEY = "vcinr.state"  # safetensors metadata key of a checkpoint's scalars (JSON)
MAX_STEPS = 10**9  # outer steps: far beyond any run (the paper's longest are ~10^6)
MAX_SECONDS = 1e9  # recorded training time (30 years)


def _sync(path: Path) -> None:
    """fsync a file or directory, so its contents (or a rename in it) survive a power cut.

    A no-op where the file system does not support it.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _reserve(path: Path, directory: bool) -> Path:
    """Create a new, empty ``.NAME.XXXXXXXX.tmp<suffix>`` beside ``path`` (a folder when ``directory``).

    The suffix is kept so that libraries that choose a format by it (Pillow, soundfile, PyAV)
    choose the target's.  Created with 0666 (0777) minus the umask: ``mkstemp``'s 0600 made
    ``.vci`` and model files unreadable to others while decoded outputs were 0644.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            if directory:
                tmp.mkdir()
            else:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` that replaces it when the ``with`` block succeeds.

    The block writes the temporary file (or fills the temporary folder, ``directory=True``,
    which may replace only an empty folder); on any error it is removed and the target is
    untouched.  The parent folder must exist: a missing one is the caller's error to report.
    Errors are not translated; the modality writers say which file failed in their own words.
    """
    path = Path(path)
    tmp = _reserve(path, directory)
    mode = None if directory else os.stat(tmp).st_mode & 0o777
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)  # some libraries (safetensors) replace the file with one of their own (0600)
        _sync(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    _sync(path.parent)


def remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files that writes of ``path`` killed mid-way (SIGKILL, power cut) left behind.

    Only for files one process writes at a time (a run's checkpoints): the next writer of
    the same file cleans up after the killed one.
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        _remove(stale)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, creating missing parent folders (a model's ``codecs/``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors ``save_file``, atomically (see :func:`atomic_write_bytes`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def save_state(path: Path, tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    """A checkpoint as *one* atomic safetensors file: tensors plus ``scalars`` as JSON metadata.

    One file, so a crash or SIGKILL leaves either the previous checkpoint or the new one,
    never tensors of one step beside the step counter of another.  Temporary files of a
    write that was killed are removed first.
    """
    remove_stale_temporaries(path)
    atomic_save_tensors(tensors, path, {STATE_KEY: json.dumps(scalars, allow_nan=False)})


def _check_scalars(scalars: Any) -> dict[str, Any]:
    """A checkpoint's scalars (:func:`save_state`), checked like a config; ``ValueError`` when damaged.

    ``ValueError`` because the checkpoint readers already report it as "damaged or from
    another vcinr version; delete it to start over", naming the file.  A tampered step of
    -1 or 10^15, a NaN learning rate or elapsed time used to be tracebacks or a run that
    "trained" 10^15 steps.
    """
    if not isinstance(scalars, dict):
        raise ValueError("checkpoint state is not a JSON object")
    if "step" in scalars and (type(scalars["step"]) is not int or not 0 <= scalars["step"] <= MAX_STEPS):
        raise ValueError(f"checkpoint step must be an integer in 0..{MAX_STEPS}, got {shown(scalars['step'])}")
    for key in ("elapsed", "cpu"):
        value = scalars.get(key, 0.0)
        if type(value) not in (int, float) or not 0.0 <= value <= MAX_SECONDS:
            raise ValueError(f"checkpoint {key} must be seconds in [0, {MAX_SECONDS:g}], got {shown(value)}")
    initial = scalars.get("initial", {})
    if not isinstance(initial, dict) or not all(type(v) in (int, float) for v in initial.values()):
        raise ValueError("checkpoint initial metrics must be an object of numbers")
    groups = scalars.get("param_groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise ValueError("checkpoint param_groups must be a list of objects")
    for group in groups:
        for key, value in group.items():
            values = value if isinstance(value, list) else [value]
            if not all(v is None or type(v) in (bool, str) or (type(v) in (int, float) and abs(v) <= 1e18)
                       for v in values):
                raise ValueError(f"checkpoint optimiser setting {key} must be finite, got {shown(value)}")
        if "lr" in group and not (type(group["lr"]) in (int, float) and 0.0 <= group["lr"] <= 1e6):
            raise ValueError(f"checkpoint learning rate must be in [0, 1e6], got {shown(group['lr'])}")
    return scalars


def load_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Inverse of :func:`save_state`; raises ``SafetensorError``/``KeyError``/``ValueError`` on damage.

    The file is refused beyond ``MAX_WEIGHTS_BYTES`` (or when not a regular file) and its
    scalars are checked like a config (:func:`_check_scalars`), so a
    tampered step, learning rate or time is a damaged checkpoint, not a traceback later.
    """
    open_regular(path, MAX_WEIGHTS_BYTES, "checkpoint", ModelError).close()
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    scalars = _check_scalars(parse_json(metadata[STATE_KEY], "checkpoint state", ValueError))
    return tensors, scalars


def state_step(path: Path) -> int | None:
    """The step a checkpoint holds (read from its metadata only), ``None`` without a readable one.

    For messages before the work starts ("resuming from step N"); a damaged checkpoint also
    gives ``None`` and is reported by :func:`load_state` when training reads it.
    """
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt") as f:
            step = parse_json((f.metadata() or {})[STATE_KEY], "checkpoint state", ValueError)["step"]
    except (OSError, KeyError, TypeError, ValueError, SafetensorError):
        return None
    return step if isinstance(step, int) else None


def fingerprint_file(path: Path) -> str:
    """SHA-256 of a weights file: bitstreams name the exact model they need by it.

    Hashed in chunks and refused beyond ``MAX_WEIGHTS_BYTES`` (or when not a regular file),
    so a sparse multi-GB file is never read; models and quality levels are hashed before
    they are loaded, which bounds what safetensors then allocates.
    """
    return sha256_bounded(path, MAX_WEIGHTS_BYTES, "weights file", ModelError)
