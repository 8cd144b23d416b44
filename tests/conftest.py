"""Shared fixtures: the real test data and tiny meta-trained models (session-scoped, cached).

* ``data_dir`` — ``../shared/data`` (or ``$VCINR_DATA``); tests that use it are skipped
  when it is missing.
* ``tiny_config(kind, path, ...)`` — a :class:`~vcinr.config.Config` small enough to
  meta-train in seconds on one CPU core (width 16, depth 2, dim φ 8, 100 outer steps: enough
  for the latents to matter, ~2 dB over φ0 on CIFAR-10).
* ``tiny_model_factory(name, config)`` — meta-trains ``config`` once per session into a
  temporary model directory and returns its path (same name → same directory).
* ``tiny_cifar_model`` — a tiny unpatched VC-INR on 64 CIFAR-10 training images (32×32 RGB).
* ``vcinr_main`` — ``vcinr.cli.main``, the ``vcinr`` command as a function.
* ``tiny_cifar_codecs`` — a copy of it with quality levels fitted: learned ``1..3``
  (λ = 1e-5, 1e-3, 0.1) and uniform ``u3``, ``u6``, ``u8``.

Directories returned by session fixtures are shared: copy them (``shutil.copytree``) before
changing anything inside.

Torch runs single-threaded in tests (``$VCINR_TEST_THREADS`` overrides): on the shared 2-core
machines, two OpenMP threads competing with other processes made tiny models ~30x slower.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

DATA = Path(os.environ.get("VCINR_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def make_tiny_config(kind: str, path: str | Path, *, patch: list[int] | None = None, max_items: int = 64,
                     steps: int = 100, width: int = 16, depth: int = 2, latent_dim: int = 8,
                     conditioning: str = "vcinr", batch_size: int = 8, outer_lr: float = 3e-3,
                     inner_steps: int = 3, seed: int = 0, options: dict | None = None):
    from vcinr.config import Config, MetaConfig, ModelConfig, TrainConfig, VcinrOptions
    from vcinr.data import DataConfig

    config = Config(
        model=ModelConfig(width=width, depth=depth, latent_dim=latent_dim, conditioning=conditioning,
                          vcinr=VcinrOptions(hidden=16, rank=2)),
        meta=MetaConfig(inner_steps=inner_steps),
        train=TrainConfig(steps=steps, batch_size=batch_size, outer_lr=outer_lr, eval_every=steps,
                          eval_items=16, checkpoint_every=steps, seed=seed),
        data=DataConfig(kind=kind, path=str(path), patch=patch, max_items=max_items, seed=seed,
                        options=dict(options or {})),
    )
    config.validate()
    return config


def pytest_configure(config) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("VCINR_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"test data not found at {DATA} (set VCINR_DATA)")
    return DATA


@pytest.fixture(scope="session")
def tiny_config() -> Callable:
    return make_tiny_config


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory) -> Callable:
    from vcinr.training import train

    cache: dict[str, Path] = {}

    def make(name: str, config) -> Path:
        if name not in cache:
            out = tmp_path_factory.mktemp(f"model-{name}")
            train(config, out, progress=False)
            cache[name] = out
        return cache[name]

    return make


@pytest.fixture(scope="session")
def tiny_cifar_model(tiny_model_factory, data_dir) -> Path:
    return tiny_model_factory("cifar", make_tiny_config("cifar10", data_dir / "cifar10"))


@pytest.fixture(scope="session")
def tiny_cifar_codecs(tiny_cifar_model, tmp_path_factory) -> Path:
    from vcinr.codec.fit import FitSettings, fit_codecs

    out = tmp_path_factory.mktemp("cifar-codecs") / "model"
    shutil.copytree(tiny_cifar_model, out)
    settings = FitSettings(lambdas=(1e-5, 1e-3, 0.1), bits=(3, 6, 8), steps=200, lr=1e-2, batch_size=16,
                           max_items=64, eval_items=64, checkpoint_every=100)
    fit_codecs(out, settings=settings, progress=False)
    return out


@pytest.fixture
def vcinr_main() -> Callable:
    """The ``vcinr`` command as a function: ``vcinr_main([...]) -> exit code``."""
    from vcinr.cli import main

    return main
