"""Experiment configuration: YAML presets → typed, validated dataclasses.

A config has four sections — ``model`` (the SIREN and its conditioning), ``meta`` (Meta-SGD),
``train`` (the outer loop) and ``data`` (:class:`vcinr.data.DataConfig`).  Unknown keys and
out-of-range values are refused with a one-line :class:`~vcinr.errors.ConfigError` that
names the offending key, because a silently ignored typo costs a whole training run.

Presets ship inside the package (``vcinr/configs/*.yaml``) and can be named without a path:
``vcinr train --config cifar10-tiny``.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vcinr.data import DataConfig
from vcinr.errors import ConfigError
from vcinr.inr.conditioning import CONDITIONINGS
from vcinr.limits import MAX_JSON_BYTES, MAX_JSON_DEPTH, check_json_shape, read_bounded

# Largest magnitude of a config number: keeps integers within int64 and floats within float32.
MAX_NUMBER = 1e18


@dataclass
class VcinrOptions:
    """The φ → gates network of VC-INR (Tables 3–7, "φ → {G_low} network").

    ``phi0_scale``/``learn_phi0``: φ0 starts as N(0, phi0_scale²·I) (0: at zero, as in the
    paper) and is meta-learned or kept fixed; see :class:`vcinr.inr.conditioning.GatedConditioning`.
    """

    hidden: int = 256
    blocks: int = 1
    rank: int = 4
    gate_first_layer: bool = False
    layer_norm: bool = True
    phi0_scale: float = 0.0
    learn_phi0: bool = True


@dataclass
class MscnOptions:
    """MSCN's sparse latent: a pool of ``pool × latent_dim`` gated entries of which each item
    keeps its ``latent_dim`` largest, in training as in evaluation; ``l0_weight`` is the weight
    of the L0 penalty (expected fraction of open gates) in the inner loss."""

    pool: int = 4
    l0_weight: float = 1e-3


@dataclass
class ModelConfig:
    width: int = 64
    depth: int = 4
    w0: float = 30.0
    conditioning: str = "vcinr"
    latent_dim: int = 64
    vcinr: VcinrOptions = field(default_factory=VcinrOptions)
    mscn: MscnOptions = field(default_factory=MscnOptions)


@dataclass
class MetaConfig:
    inner_steps: int = 3
    lr_init: tuple[float, float] = (1.0, 1.0)
    lr_clip: tuple[float, float] = (-5.0, 5.0)
    second_order: bool = True
    checkpointing: bool = False


@dataclass
class TrainConfig:
    """The outer loop.  The outer learning rate rises linearly from 0 over ``warmup_steps``,
    then stays (``decay: none``) or follows a cosine down to ``final_lr_fraction × outer_lr``
    at ``steps`` (``decay: cosine``): second-order meta-learning is most fragile in its first
    steps, when the adapted latents change fastest, and a decayed rate settles a long run.
    ``init_from`` starts a new run from another model's weights (same architecture) with a
    fresh optimiser and schedule: how a long training continues from committed weights when
    its checkpoint (optimiser state included) is too large to keep.  ``ema_decay`` turns on an
    exponential moving average of the weights that validation and the written model use
    (:mod:`vcinr.meta.averaging`); 0.998 averages over about the last 500 steps.
    ``spike_factor``: when the median loss of the last 20 steps exceeds this multiple of the
    200 steps' before, the run returns to its state of 100–200 steps earlier and continues at
    half the learning rate (:mod:`vcinr.meta.rollback`), at most ``max_rollbacks`` times.
    """

    steps: int = 1000
    batch_size: int = 16
    outer_lr: float = 3e-4
    warmup_steps: int = 0
    decay: str = "none"
    final_lr_fraction: float = 0.1
    grad_clip: float | None = 1.0
    eval_every: int = 100
    eval_items: int = 128
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "cpu"
    time_budget: float | None = None
    init_from: str | None = None  # a model directory whose weights start the run (a warm start)
    ema_decay: float | None = None  # average the weights (validated and saved) with this decay per step
    spike_factor: float | None = 5.0  # roll back and halve the lr when the loss median jumps this much (None: off)
    max_rollbacks: int = 4  # rollbacks before the run is declared diverged


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Range checks that the types alone cannot express."""
        m, meta, t = self.model, self.meta, self.train
        positive = {
            "model.width": m.width, "model.depth": m.depth, "model.latent_dim": m.latent_dim,
            "model.w0": m.w0, "model.vcinr.hidden": m.vcinr.hidden, "model.vcinr.rank": m.vcinr.rank,
            "model.mscn.pool": m.mscn.pool, "train.steps": t.steps, "train.batch_size": t.batch_size,
            "train.outer_lr": t.outer_lr, "train.eval_every": t.eval_every,
            "train.eval_items": t.eval_items, "train.checkpoint_every": t.checkpoint_every,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key} must be positive, got {value}")
        if m.conditioning not in CONDITIONINGS:
            raise ConfigError(f"model.conditioning must be {', '.join(CONDITIONINGS)}, got {m.conditioning!r}")
        if not m.mscn.l0_weight >= 0:
            raise ConfigError(f"model.mscn.l0_weight must be >= 0, got {m.mscn.l0_weight}")
        if m.vcinr.blocks < 0 or meta.inner_steps < 0:
            raise ConfigError("model.vcinr.blocks and meta.inner_steps must be >= 0")
        if meta.lr_init[0] > meta.lr_init[1] or meta.lr_clip[0] > meta.lr_clip[1]:
            raise ConfigError("meta.lr_init and meta.lr_clip must be [low, high] with low <= high")
        if t.grad_clip is not None and t.grad_clip <= 0:
            raise ConfigError(f"train.grad_clip must be positive (or null for no clipping), got {t.grad_clip}")
        if t.time_budget is not None and t.time_budget <= 0:
            raise ConfigError(f"train.time_budget must be positive seconds, got {t.time_budget}")
        if t.warmup_steps < 0:
            raise ConfigError(f"train.warmup_steps must be >= 0, got {t.warmup_steps}")
        if t.spike_factor is not None and not t.spike_factor > 1.0:
            raise ConfigError(f"train.spike_factor must be > 1 (or null for no rollback), got {t.spike_factor}")
        if t.max_rollbacks < 0:
            raise ConfigError(f"train.max_rollbacks must be >= 0, got {t.max_rollbacks}")
        if t.ema_decay is not None and not 0.0 < t.ema_decay < 1.0:
            raise ConfigError(f"train.ema_decay must be in (0, 1) (or null for none), got {t.ema_decay}")
        if t.decay not in ("none", "cosine"):
            raise ConfigError(f"train.decay must be none or cosine, got {t.decay!r}")
        if not 0.0 <= t.final_lr_fraction <= 1.0:
            raise ConfigError(f"train.final_lr_fraction must be in [0, 1], got {t.final_lr_fraction}")
        if t.device != "cpu" and not t.device.startswith("cuda"):
            raise ConfigError(f"train.device must be cpu or cuda[:N], got {t.device!r}")


def with_defaults(recorded: dict[str, Any]) -> dict[str, Any]:
    """A recorded :meth:`Config.to_dict` with the ``train`` and ``data`` keys added since it was written
    at their defaults, which is what the run it records used (so such a run still resumes)."""
    train_defaults = dataclasses.asdict(TrainConfig())
    data_defaults = {f.name: f.default for f in dataclasses.fields(DataConfig) if f.default is not dataclasses.MISSING}
    source = lambda section: {**data_defaults, **section} if isinstance(section, dict) else section  # noqa: E731
    data = recorded.get("data")
    if isinstance(data, dict):
        mix = data.get("mix")
        data = {**source(data), "mix": [source(m) for m in mix] if isinstance(mix, list) else mix}
    return {**recorded, "train": {**train_defaults, **recorded["train"]}, "data": data}


def _convert(value: Any, hint: Any, key: str) -> Any:
    """Coerce a YAML value to the annotated type, or raise a ConfigError naming ``key``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{key} must be a list of {len(args)} numbers, got {value!r}")
        return tuple(_convert(v, a, key) for v, a in zip(value, args))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_convert(v, args[0], key) for v in value] if args else list(value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
        if not abs(number) <= MAX_NUMBER:  # also NaN
            raise ConfigError(f"{key} must be a finite number of magnitude at most {MAX_NUMBER:g}, got {value!r}")
        if hint is int:
            if number != int(number):
                raise ConfigError(f"{key} must be an integer, got {value!r}")
            return int(number)
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, refusing keys it does not have."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(names)})"
            raise ConfigError(f"unknown config key '{path}'{hint}")
        kwargs[key] = _convert(value, hints[key], path)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("vcinr.configs").iterdir() if p.name.endswith(".yaml"))


def parse_yaml(text: str, what: str) -> Any:
    """YAML text (a config file, a ``--set`` value) → value; a syntax error or deep nesting is one line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError(f"{what}: nested deeper than {MAX_JSON_DEPTH} levels") from None


def load_config(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Load a preset by name or a YAML file by path, apply ``section.key`` overrides, validate."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            text = read_bounded(path, MAX_JSON_BYTES, "config file", ConfigError).decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not valid YAML (not UTF-8 text)") from None
    else:
        preset = resources.files("vcinr.configs") / f"{name_or_path}.yaml"
        if not preset.is_file():
            raise ConfigError(f"no config file or preset named {str(name_or_path)!r}; "
                              f"presets: {', '.join(preset_names())}")
        text = preset.read_text()
    raw = parse_yaml(text, str(name_or_path)) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name_or_path}: config must be a mapping of sections, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        section = raw
        *parents, last = dotted.split(".")
        for depth, name in enumerate(parents):
            section = section.setdefault(name, {})
            if not isinstance(section, dict):
                raise ConfigError(f"cannot set {dotted}: {'.'.join(parents[:depth + 1])} is not a section")
        section[last] = value
    # aliases share one object per anchor, so a few hundred bytes can stand for 10^9 elements that
    # the checks below would walk (a hang); the walk here counts them, iteratively, and stops at the cap
    check_json_shape(raw, str(name_or_path), ConfigError)
    config = from_dict(Config, raw)
    config.validate()
    return config
