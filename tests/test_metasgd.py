"""Meta-SGD: inner loop semantics, second- vs first-order gradients, checkpointing."""

import pytest
import torch

from vcinr.inr.conditioning import build_conditioning
from vcinr.inr.siren import Siren
from vcinr.meta.metasgd import MetaINR
from vcinr.signal import grid_coordinates


def make_model(scheme="vcinr", loss="mse"):
    torch.manual_seed(0)
    siren = Siren(2, 3, 24, 3)
    options = {"mscn": {"budget": 8}, "vcinr": {"hidden": 16, "rank": 2}}.get(scheme, {})
    cond = build_conditioning(scheme, 16, siren.layer_shapes, **options)
    return MetaINR(siren, cond, inner_steps=3, lr_init=(0.5, 1.0), loss=loss)


@pytest.fixture
def batch():
    torch.manual_seed(1)
    coords = grid_coordinates((6, 6), 0.0, 1.0).reshape(-1, 2)
    return coords, torch.rand(4, 36, 3)


def test_step_sizes_initialised_in_range_and_clipped():
    model = make_model()
    assert ((model.inner_lr >= 0.5) & (model.inner_lr <= 1.0)).all()
    with torch.no_grad():
        model.inner_lr.fill_(100.0)
    assert model.step_sizes().max() == 5.0


@pytest.mark.parametrize("scheme", ["functa", "vcinr"])
def test_inner_loop_lowers_the_loss(scheme, batch):
    coords, target = batch
    model = make_model(scheme).eval()
    with torch.no_grad():
        before = model.item_loss(model.predict(coords, model.adapt(coords, target, steps=0)), target)
        after = model.item_loss(model.predict(coords, model.adapt(coords, target, steps=3)), target)
    assert (after < before).all()


def test_one_step_matches_the_metasgd_formula(batch):
    coords, target = batch
    model = make_model("functa").eval()
    phi0 = model.state0.detach().expand(4, -1).clone().requires_grad_(True)
    loss = model.item_loss(model.predict(coords, phi0), target).sum()
    (grad,) = torch.autograd.grad(loss, phi0)
    expected = phi0.detach() - model.step_sizes().detach() * grad
    with torch.no_grad():
        assert torch.allclose(model.adapt(coords, target, steps=1), expected, atol=1e-6)


def test_second_order_gradient_differs_from_first_order(batch):
    coords, target = batch
    grads = {}
    for second_order in (True, False):
        model = make_model("functa")
        state = model.adapt(coords, target, second_order=second_order)
        model.item_loss(model.predict(coords, state), target).mean().backward()
        grads[second_order] = model.siren.hidden[1].weight.grad.clone()
        assert model.state0.grad is not None and model.inner_lr.grad is not None
    assert not torch.allclose(grads[True], grads[False])


def test_checkpointing_gives_the_same_gradients(batch):
    coords, target = batch
    grads = []
    for checkpointing in (False, True):
        model = make_model("vcinr")
        state = model.adapt(coords, target, checkpointing=checkpointing)
        model.item_loss(model.predict(coords, state), target).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_no_graph_is_kept_when_encoding(batch):
    coords, target = batch
    model = make_model().eval()
    with torch.no_grad():
        state = model.adapt(coords, target)
    assert not state.requires_grad


def test_bce_loss_and_decode_are_probabilities(batch):
    coords, _ = batch
    model = make_model(loss="bce").eval()
    occupancy = (torch.rand(4, 36, 3) > 0.5).float()
    with torch.no_grad():
        state = model.adapt(coords, occupancy)
        probs = model.decode(coords, model.conditioning.code(state))
    assert ((probs >= 0) & (probs <= 1)).all()


def test_unknown_loss_is_refused():
    siren = Siren(2, 1, 8, 2)
    with pytest.raises(ValueError):
        MetaINR(siren, build_conditioning("functa", 4, siren.layer_shapes), loss="l1")
