"""vcinr.meta.losses: each loss is one object, named as model files store it (issue 15, point 5)."""

from __future__ import annotations

import json

import pytest
import torch

from vcinr.meta.losses import BCE, LOSSES, MSE, get_loss


def test_a_loss_is_its_stored_name():
    assert get_loss("mse") is MSE and get_loss(BCE) is BCE and set(LOSSES) == {"mse", "bce"}
    assert json.dumps({"loss": MSE}) == '{"loss": "mse"}'
    with pytest.raises(ValueError, match="loss must be one of"):
        get_loss("l1")


@pytest.mark.parametrize("loss", [MSE, BCE])
def test_the_written_out_gradient_is_autograds(loss):
    out = torch.randn(3, 5, 2, dtype=torch.float64, requires_grad=True)
    targets = torch.rand(3, 5, 2, dtype=torch.float64)
    if loss is BCE:
        targets = targets.round()  # occupancies
    scale = 1.0 / out[0].numel()
    (grad,) = torch.autograd.grad(loss.point_loss(out, targets).sum() * scale, out)
    assert torch.allclose(loss.point_loss_grad(out.detach(), targets, scale), grad)


def test_quality_figures():
    assert MSE.metric == "psnr" and float(MSE.quality(torch.tensor(1e-2))) == pytest.approx(20.0)
    assert MSE.exact_quality(0.0) == float("inf")
    decoded, original = torch.tensor([0.2, 0.7, 0.9]), torch.tensor([0.0, 1.0, 0.0])
    assert BCE.metric == "accuracy" and BCE.exact_quality(float(BCE.feature_errors(decoded, original).mean())) == \
        pytest.approx(2 / 3)
    assert torch.equal(BCE.features(torch.zeros(1)), torch.full((1,), 0.5))
