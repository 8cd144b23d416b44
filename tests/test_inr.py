"""The base SIREN and the three conditioning schemes: shapes, gradients, paper semantics."""

import math

import pytest
import torch

from vcinr.inr.conditioning import (
    GatedConditioning,
    ShiftConditioning,
    SparseShiftConditioning,
    build_conditioning,
)
from vcinr.inr.siren import Modulations, Siren
from vcinr.signal import grid_coordinates

WIDTH, DEPTH, BATCH = 32, 3, 5


@pytest.fixture
def siren():
    torch.manual_seed(0)
    return Siren(in_dim=2, out_dim=3, width=WIDTH, depth=DEPTH, w0=30.0)


@pytest.fixture
def coords():
    return grid_coordinates((8, 8), 0.0, 1.0).reshape(-1, 2)


def make(scheme, siren):
    options = {"mscn": {"budget": 8}, "vcinr": {"hidden": 16, "rank": 2}}.get(scheme, {})
    return build_conditioning(scheme, 16, siren.layer_shapes, **options)


def test_siren_initialisation_bounds(siren):
    first, second = siren.hidden[0], siren.hidden[1]
    assert first.weight.abs().max() <= 1.0 / 2 + 1e-6
    assert second.weight.abs().max() <= math.sqrt(6 / WIDTH) / 30 + 1e-6


def test_grid_coordinates_cover_range():
    c = grid_coordinates((4, 3), -5.0, 5.0)
    assert c.shape == (4, 3, 2)
    assert c[0, 0].tolist() == [-5.0, -5.0] and c[-1, -1].tolist() == [5.0, 5.0]


@pytest.mark.parametrize("scheme", ["functa", "mscn", "vcinr"])
def test_forward_shape_and_gradient_wrt_latent(scheme, siren, coords):
    cond = make(scheme, siren)
    state = (cond.initial_state() + 0.1 * torch.randn(BATCH, cond.state_dim)).requires_grad_(True)
    out = siren(coords, cond.modulations(state))
    assert out.shape == (BATCH, 64, 3)
    out.square().mean().backward()
    assert state.grad is not None and torch.isfinite(state.grad).all()
    assert state.grad.abs().sum() > 0
    # Every item's output depends on its own latent only.
    state2 = state.detach().clone()
    state2[0, :3] += torch.tensor([1.0, -1.0, 0.5])  # not a constant shift, which LayerNorm removes
    out2 = siren(coords, cond.modulations(state2))
    assert not torch.allclose(out2[0], out[0].detach())
    assert torch.allclose(out2[1:], out[1:].detach())


def test_shift_modulation_is_linear_in_latent(siren):
    cond = ShiftConditioning(16, siren.layer_shapes)
    a, b = torch.randn(1, 16), torch.randn(1, 16)
    sa, sb, sab = (cond.modulations(x).shifts[1] for x in (a, b, a + b))
    assert torch.allclose(sab, sa + sb, atol=1e-5)  # zero bias: shifts are linear in φ


def test_vcinr_gates_are_low_rank_sigmoid_and_first_layer_ungated(siren):
    cond = GatedConditioning(16, siren.layer_shapes, hidden=16, rank=2)
    mods = cond.modulations(torch.randn(BATCH, 16))
    assert mods.gates[0] is None and all(s is None for s in mods.shifts)
    gate = mods.gates[1]
    assert gate.shape == (BATCH, WIDTH, WIDTH)
    assert (gate > 0).all() and (gate < 1).all()
    singular = torch.linalg.svdvals(torch.logit(gate[0].double()))
    assert singular[2] < 1e-4 * singular[0]  # σ(U Vᵀ) with a rank-2 U Vᵀ


def test_vcinr_gate_first_layer_option(siren):
    cond = GatedConditioning(16, siren.layer_shapes, hidden=16, rank=2, gate_first_layer=True)
    assert cond.modulations(torch.randn(2, 16)).gates[0].shape == (2, WIDTH, 2)


def test_gated_forward_equals_explicit_weight_product(siren, coords):
    gate = torch.rand(1, WIDTH, WIDTH)
    mods = Modulations(shifts=[None] * DEPTH, gates=[None, gate, None])
    out = siren(coords, mods)
    h = torch.sin(30 * (coords @ siren.hidden[0].weight.T + siren.hidden[0].bias))
    h = torch.sin(30 * (h @ (gate[0] * siren.hidden[1].weight).T + siren.hidden[1].bias))
    h = torch.sin(30 * siren.hidden[2](h))
    assert torch.allclose(out[0], siren.output(h), atol=1e-5)


def test_mscn_keeps_exactly_budget_entries_at_evaluation(siren):
    cond = SparseShiftConditioning(16, budget=5, layer_shapes=siren.layer_shapes)
    state = torch.cat([torch.randn(3, 16), torch.randn(3, 16)], dim=1)
    code = cond.code(state)
    assert code.shape == (3, 16)
    assert ((code != 0).sum(dim=1) <= 5).all()
    assert (cond.inner_penalty(state) > 0).all()


def test_mscn_keeps_exactly_budget_entries_when_gates_saturate(siren):
    # Large logits clamp most gates to exactly 1: ties must not let more than ``budget`` through.
    cond = SparseShiftConditioning(16, budget=5, layer_shapes=siren.layer_shapes)
    state = torch.cat([torch.randn(3, 16) + 5.0, torch.full((3, 16), 8.0)], dim=1)
    assert ((cond.code(state) != 0).sum(dim=1) == 5).all()
    mods = cond.modulations(cond.project(state))  # the inner loop's states are projected
    assert torch.allclose(torch.cat(list(mods.shifts), -1), cond.to_shifts(cond.code(state)), atol=1e-6)


def test_mscn_penalty_falls_as_gates_close(siren):
    cond = SparseShiftConditioning(16, budget=5, layer_shapes=siren.layer_shapes)
    open_state = torch.cat([torch.zeros(1, 16), torch.full((1, 16), 3.0)], dim=1)
    closed_state = torch.cat([torch.zeros(1, 16), torch.full((1, 16), -3.0)], dim=1)
    assert cond.inner_penalty(closed_state) < cond.inner_penalty(open_state)


def test_unknown_scheme_is_refused(siren):
    with pytest.raises(ValueError, match="unknown conditioning"):
        build_conditioning("film", 16, siren.layer_shapes)


@pytest.mark.parametrize("bias_shape", [None, (5,), (2, 1, 5)])
def test_onednn_linear_matches_functional_linear_to_second_order(bias_shape):
    """backend.FAST.linear (oneDNN for fp32 on CPU): same values, gradients and double-backward
    gradients (the scenes' inner loop differentiates through it twice) as F.linear."""
    from vcinr import backend

    if not backend._ONEDNN:
        pytest.skip("this PyTorch build has no oneDNN linear")
    torch.manual_seed(0)
    x = torch.randn(2, 7, 4, requires_grad=True)
    weight = torch.randn(5, 4, requires_grad=True)
    bias = None if bias_shape is None else torch.randn(bias_shape, requires_grad=True)
    inputs = [t for t in (x, weight, bias) if t is not None]

    def grads(out):
        first = torch.autograd.grad(out.sin().sum(), inputs, create_graph=True)
        second = torch.autograd.grad(sum(g.square().sum() for g in first), inputs)
        return out, first, second

    fast = grads(backend.FAST.linear(x, weight, bias))
    assert fast[0].grad_fn.name() == "_OneDNNLinearBackward"
    reference = torch.nn.functional.linear(x, weight)
    reference = grads(reference if bias is None else reference + bias)
    torch.testing.assert_close(fast[0], reference[0])
    for a, b in zip(fast[1] + fast[2], reference[1] + reference[2]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)  # fp32 sums in another order


def test_numpy_sines_match_torch_to_float_precision():
    """backend.FAST.sine (NumPy's SIMD loops for fp32 on CPU) against float64 torch, in and out of place."""
    from vcinr.backend import FAST

    _sine = FAST.sine

    x = torch.linspace(-120.0, 120.0, 100_003)[:-3].reshape(100, 1000)  # w0·pre spans about ±w0·4
    for cosine, exact in ((False, torch.sin(x.double())), (True, torch.cos(x.double()))):
        torch.testing.assert_close(_sine(x, cosine=cosine).double(), exact, rtol=0, atol=2e-7)
        strided = x.t()
        torch.testing.assert_close(_sine(strided, cosine=cosine).double(), exact.t(), rtol=0, atol=2e-7)
        inplace = x.clone()
        assert _sine(inplace, cosine=cosine, out=inplace) is inplace
        torch.testing.assert_close(inplace.double(), exact, rtol=0, atol=2e-7)


def test_reference_backend_runs_plain_torch_and_agrees_with_the_fast_one():
    """A Siren on backend.REFERENCE: plain torch ops only (no oneDNN, no NumPy sines), the same
    outputs and modulation gradients as on the default FAST backend, to float tolerance."""
    import copy

    from vcinr.backend import REFERENCE

    torch.manual_seed(0)
    fast = Siren(2, 3, 32, 3)
    plain = copy.deepcopy(fast)
    plain.backend = REFERENCE
    coords = torch.rand(50, 2)
    mods = Modulations([torch.randn(4, 32) * 0.1 for _ in range(3)], [None] * 3)
    with torch.no_grad():
        torch.testing.assert_close(plain(coords, mods), fast(coords, mods), rtol=1e-5, atol=1e-5)
        outs = [net.forward_trace(coords, mods) for net in (fast, plain)]
        grads = [net.modulation_grads(trace, out - 0.5) for net, (out, trace) in zip((fast, plain), outs)]
    for a, b in zip(grads[0].shifts, grads[1].shifts):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    x = torch.randn(3, 5, requires_grad=True)
    assert REFERENCE.linear(x, torch.randn(4, 5)).grad_fn.name() != "_OneDNNLinearBackward"
    sin, cos = REFERENCE.sin_cos(x)
    assert sin.grad_fn.name() == "SinBackward0" and cos.grad_fn.name() == "CosBackward0"
