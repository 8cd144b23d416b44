"""What keeps meta-training stable as the network grows: φ0 off LayerNorm's singular point, the outer-lr schedule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from vcinr.config import load_config
from vcinr.data import DataConfig, load_items
from vcinr.errors import ConfigError
from vcinr.meta.items import flat_items
from vcinr.meta.model import build_model
from vcinr.meta.training import outer_lr_at
from vcinr.training import item_spec


@pytest.mark.parametrize("dim", [64, 256, 1024])
def test_vcinr_latent_starts_where_layernorm_is_well_conditioned(dim: int, data_dir: Path) -> None:
    """At φ0 = 0 LayerNorm's Jacobian is 1/√eps ≈ 316; a unit-scale φ0 keeps it near the identity."""
    config = load_config("cifar10-tiny", {"model.latent_dim": dim, "model.vcinr.phi0_scale": 1.0})
    torch.manual_seed(0)
    items = load_items(DataConfig(kind="cifar10", path=str(data_dir / "cifar10"), max_items=8), "train")
    model = build_model(config, item_spec(config, items))
    norm = model.conditioning.norm
    jacobian = torch.autograd.functional.jacobian(norm, model.state0.detach())
    assert float(torch.linalg.matrix_norm(jacobian, 2)) < 2.0
    assert float(torch.linalg.matrix_norm(torch.autograd.functional.jacobian(norm, torch.zeros(dim)), 2)) > 100


def test_outer_gradient_on_phi0_is_no_larger_than_on_the_network(data_dir: Path) -> None:
    """At φ0 = 0 the outer gradient on φ0 was 10x the largest of any other parameter (dim 256)."""
    config = load_config("cifar10-tiny", {"model.latent_dim": 256, "model.vcinr.phi0_scale": 1.0})
    items = load_items(DataConfig(kind="cifar10", path=str(data_dir / "cifar10"), max_items=16), "train")
    coords, features = flat_items(items)
    torch.manual_seed(0)
    model = build_model(config, item_spec(config, items))
    model.meta_loss(coords, features).backward()
    grads = {name: float(p.grad.norm()) for name, p in model.named_parameters()}
    assert grads["state0"] < 0.1 * max(v for k, v in grads.items() if k != "state0")


def test_phi0_defaults_to_zero_and_can_be_kept_fixed(data_dir: Path) -> None:
    items = load_items(DataConfig(kind="cifar10", path=str(data_dir / "cifar10"), max_items=8), "train")
    config = load_config("cifar10-tiny")
    assert torch.equal(build_model(config, item_spec(config, items)).state0, torch.zeros(64))
    fixed = load_config("cifar10-tiny", {"model.vcinr.learn_phi0": False})
    model = build_model(fixed, item_spec(fixed, items))
    assert "state0" not in dict(model.named_parameters()) and "state0" in model.state_dict()


def test_outer_lr_warms_up_then_decays_along_a_cosine() -> None:
    t = load_config("cifar10-tiny", {"train.steps": 1000, "train.outer_lr": 1e-3, "train.warmup_steps": 100,
                                     "train.decay": "cosine", "train.final_lr_fraction": 0.1}).train
    lrs = [outer_lr_at(t, step) for step in range(1000)]
    assert lrs[0] == pytest.approx(1e-5) and lrs[99] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:99], lrs[1:100]))
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:]))
    assert lrs[550] == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5), rel=1e-6)
    assert lrs[-1] == pytest.approx(1e-4, rel=1e-3)
    flat = load_config("cifar10-tiny", {"train.outer_lr": 2e-4}).train
    assert {outer_lr_at(flat, s) for s in (0, 10, 10**6)} == {2e-4}
    assert math.isclose(outer_lr_at(t, 10**6), 1e-4)


@pytest.mark.parametrize("key,value", [("train.decay", "linear"), ("train.warmup_steps", -1),
                                       ("train.final_lr_fraction", 1.5)])
def test_schedule_settings_are_checked(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config("cifar10-tiny", {key: value})
