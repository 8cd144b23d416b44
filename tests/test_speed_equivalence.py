"""The explicit inner-loop gradient equals plain autograd, to float tolerance.

The inner loop of :class:`~vcinr.meta.metasgd.MetaINR` differentiates the SIREN and the
conditioning by hand (:meth:`Siren.modulation_grads`, :meth:`Conditioning.modulations_vjp`).
The reference here is the straightforward implementation it replaced — the forward pass
written with ``torch.sin``, ``nn.LayerNorm`` and the φ-network's modules, differentiated by
``torch.autograd.grad(create_graph=True)`` — and both must agree on the gradient w.r.t. the
state, the state after 3 inner steps and the outer gradients of every parameter: for all
three schemes, in training (MSCN's noisy gates) and evaluation mode, first and second order,
with and without checkpointing (MSCN's hard thresholding to its budget after φ0 and every
step included).  Checked in float64 (tight) and float32 (float tolerance).

Also: encoding/decoding in chunks equals one batch, the analytic FLOP counts of the
benchmarks equal the products PyTorch executes, and (with a GPU) CUDA matches CPU.
"""

import math

import pytest
import torch
from torch.nn import functional as F

from vcinr.inr.conditioning import (
    GatedConditioning,
    ShiftConditioning,
    SparseShiftConditioning,
    build_conditioning,
)
from vcinr.inr.siren import Modulations, Siren
from vcinr.meta.metasgd import MetaINR
from vcinr.signal import grid_coordinates

SCHEMES = ["functa", "mscn", "vcinr"]


# --- the reference: plain forward code + nested autograd ----------------------------------------


def ref_siren(siren: Siren, coords, mods: Modulations):
    h = coords
    for layer, shift, gate in zip(siren.hidden, mods.shifts, mods.gates):
        if gate is None:
            pre = h @ layer.weight.T + layer.bias
        else:
            weight = gate * layer.weight
            if h.dim() == 2:
                h = h.expand(weight.shape[0], *h.shape)
            pre = torch.baddbmm(layer.bias, h, weight.transpose(1, 2))
        if shift is not None:
            pre = pre + shift.unsqueeze(-2)
        h = torch.sin(siren.w0 * pre)
    return siren.output(h)


def ref_mscn_gates(cond: SparseShiftConditioning, logits, stochastic):
    if stochastic:
        u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + logits) / cond.BETA)
    else:
        s = torch.sigmoid(logits)
    return (s * (cond.ZETA - cond.GAMMA) + cond.GAMMA).clamp(0.0, 1.0)


def ref_project(cond, state):
    """MSCN's hard thresholding: each item's budget largest |value × deterministic gate|."""
    if not isinstance(cond, SparseShiftConditioning):
        return state
    values, logits = state.chunk(2, dim=-1)
    score = (values * ref_mscn_gates(cond, logits, False)).detach().abs()
    kept = torch.zeros_like(values).scatter_(-1, score.topk(cond.budget, dim=-1).indices, 1.0)
    return torch.cat([values * kept, logits], dim=-1)


def ref_modulations(cond, state, stochastic):
    if isinstance(cond, (ShiftConditioning, SparseShiftConditioning)):
        code = state
        if isinstance(cond, SparseShiftConditioning):
            values, logits = state.chunk(2, dim=-1)
            code = values * ref_mscn_gates(cond, logits, stochastic)
        shifts = list(torch.split(cond.to_shifts(code), [o for o, _ in cond.layer_shapes], dim=-1))
        return Modulations(shifts, [None] * len(shifts))
    assert isinstance(cond, GatedConditioning)
    hidden = cond.inp(cond.norm(state))
    for block in cond.blocks:
        hidden = hidden + block.fc2(F.leaky_relu(block.fc1(F.leaky_relu(hidden))))
    chunks = iter(torch.split(cond.to_factors(F.leaky_relu(hidden)), cond.factor_sizes, dim=-1))
    gates = []
    for (fan_out, fan_in), gated in zip(cond.layer_shapes, cond.gated):
        if not gated:
            gates.append(None)
            continue
        uv = next(chunks)
        u = uv[:, : fan_out * cond.rank].reshape(-1, fan_out, cond.rank)
        v = uv[:, fan_out * cond.rank :].reshape(-1, fan_in, cond.rank)
        gates.append(torch.sigmoid(u @ v.transpose(1, 2)))
    return Modulations([None] * len(gates), gates)


def ref_penalty(cond, state):
    if not isinstance(cond, SparseShiftConditioning):
        return state.new_zeros(state.shape[0])
    logits = state[..., cond.latent_dim :]
    return cond.l0_weight * torch.sigmoid(logits - cond.BETA * math.log(-cond.GAMMA / cond.ZETA)).mean(-1)


def ref_predict(model: MetaINR, coords, state, stochastic):
    return ref_siren(model.siren, coords, ref_modulations(model.conditioning, state, stochastic))


def ref_inner_grad(model: MetaINR, state, coords, targets, create_graph):
    pred = ref_predict(model, coords, state, model.training)
    loss = model.item_loss(pred, targets) + ref_penalty(model.conditioning, state)
    (grad,) = torch.autograd.grad(loss.sum(), state, create_graph=create_graph)
    return grad


def ref_adapt(model: MetaINR, coords, targets, steps=3, second_order=True):
    state = ref_project(model.conditioning, model.state0.expand(targets.shape[0], -1))
    for _ in range(steps):
        if second_order:
            state = state - model.step_sizes() * ref_inner_grad(model, state, coords, targets, True)
        else:
            with torch.enable_grad():
                leaf = state.detach().requires_grad_(True)
                grad = ref_inner_grad(model, leaf, coords, targets, False)
            state = state - model.step_sizes() * grad
        state = ref_project(model.conditioning, state)
    return state


# --- fixtures -----------------------------------------------------------------------------------


def make_model(scheme, dtype, loss="mse", depth=3, gate_first_layer=False):
    torch.manual_seed(0)
    siren = Siren(2, 3, 24, depth, output_bias=0.5)
    options = {"mscn": {"budget": 8}, "vcinr": {"hidden": 32, "rank": 2, "blocks": 2,
                                                "gate_first_layer": gate_first_layer}}.get(scheme, {})
    cond = build_conditioning(scheme, 16, siren.layer_shapes, **options)
    if isinstance(cond, GatedConditioning):
        cond.compensate_siren_init(siren)
    model = MetaINR(siren, cond, inner_steps=3, lr_init=(0.5, 1.5), loss=loss).to(dtype)
    with torch.no_grad():  # a start away from the symmetric initialisation
        model.state0.add_(0.3 * torch.randn_like(model.state0))
    return model


def make_batch(dtype, loss="mse"):
    torch.manual_seed(1)
    coords = grid_coordinates((6, 6), 0.0, 1.0).reshape(-1, 2).to(dtype)
    targets = torch.rand(4, 36, 3, dtype=dtype)
    return coords, (targets > 0.5).to(dtype) if loss == "bce" else targets


TOL = {torch.float64: dict(rtol=1e-9, atol=1e-11), torch.float32: dict(rtol=2e-4, atol=2e-6)}


def assert_close(a, b, dtype):
    torch.testing.assert_close(a, b, **TOL[dtype])


# --- tests --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_inner_gradient_matches_autograd(scheme, training, dtype):
    model = make_model(scheme, dtype).train(training)
    coords, targets = make_batch(dtype)
    state = (model.state0.detach() + 0.5 * torch.randn(4, model.conditioning.state_dim, dtype=dtype))
    torch.manual_seed(7)
    with torch.no_grad():
        explicit = model._inner_grad(state, coords, targets)
    torch.manual_seed(7)
    reference = ref_inner_grad(model, state.clone().requires_grad_(True), coords, targets, False)
    assert explicit.abs().max() > 0
    assert_close(explicit, reference, dtype)


@pytest.mark.parametrize("options", [dict(loss="bce"), dict(gate_first_layer=True), dict(depth=2)])
def test_inner_gradient_matches_autograd_variants(options):
    loss = options.get("loss", "mse")
    for scheme in SCHEMES:
        model = make_model(scheme, torch.float64, **options)
        coords, targets = make_batch(torch.float64, loss)
        state = model.state0.detach() + 0.5 * torch.randn(4, model.conditioning.state_dim, dtype=torch.float64)
        torch.manual_seed(7)
        with torch.no_grad():
            explicit = model._inner_grad(state, coords, targets)
        torch.manual_seed(7)
        reference = ref_inner_grad(model, state.clone().requires_grad_(True), coords, targets, False)
        assert_close(explicit, reference, torch.float64)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_adapted_state_matches_autograd(scheme, dtype):
    model = make_model(scheme, dtype).eval()
    coords, targets = make_batch(dtype)
    with torch.no_grad():
        explicit = model.adapt(coords, targets)
    reference = ref_adapt(model, coords, targets, second_order=False).detach()
    assert_close(explicit, reference, dtype)
    assert not torch.allclose(explicit, model.state0.expand_as(explicit))


def outer_grads(model, coords, targets, adapt):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(3)
    state = adapt(model, coords, targets)
    loss = model.item_loss(ref_predict(model, coords, state, True), targets).mean()
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["second_order", "checkpointing", "first_order"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_outer_gradients_match_autograd(scheme, mode, dtype):
    model = make_model(scheme, dtype).train()
    coords, targets = make_batch(dtype)
    second_order = mode != "first_order"
    loss, explicit = outer_grads(model, coords, targets, lambda m, c, t: m.adapt(
        c, t, second_order=second_order, checkpointing=mode == "checkpointing"))
    ref_loss, reference = outer_grads(model, coords, targets,
                                      lambda m, c, t: ref_adapt(m, c, t, second_order=second_order))
    assert_close(loss, ref_loss, dtype)
    assert explicit.keys() == reference.keys() == {name for name, _ in model.named_parameters()}
    for name in reference:
        assert_close(explicit[name], reference[name], dtype)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_chunked_encoding_and_decoding_match_one_batch(scheme, monkeypatch):
    import vcinr.meta.metasgd as metasgd

    model = make_model(scheme, torch.float64).eval()
    coords, targets = make_batch(torch.float64)
    with torch.no_grad():
        whole = model.adapt(coords, targets)
        decoded = model.decode(coords, model.conditioning.code(whole))
        monkeypatch.setattr(metasgd, "CHUNK_ELEMENTS", 36 * 24 * 3)  # 3 items per chunk: chunks of 3 + 1
        assert model._chunks(coords, 4) is not None
        chunked = model.adapt(coords, targets)
        assert_close(chunked, whole, torch.float64)
        assert_close(model.decode(coords, model.conditioning.code(whole)), decoded, torch.float64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("scheme", ["functa", "vcinr"])
def test_cuda_matches_cpu(scheme):
    """The GPU path: the same adapted latents and outer gradients as on CPU, to fp32 tolerance."""
    results = {}
    for device in ("cpu", "cuda"):
        model = make_model(scheme, torch.float32).train().to(device)
        coords, targets = (x.to(device) for x in make_batch(torch.float32))
        with torch.no_grad():
            state = model.eval().adapt(coords, targets).cpu()
        model.train().zero_grad(set_to_none=True)
        model.meta_loss(coords, targets).backward()
        results[device] = state, {name: p.grad.cpu() for name, p in model.named_parameters()}
    torch.testing.assert_close(results["cuda"][0], results["cpu"][0], rtol=1e-3, atol=1e-4)
    for name, grad in results["cpu"][1].items():
        torch.testing.assert_close(results["cuda"][1][name], grad, rtol=1e-2, atol=1e-4)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("gate_first_layer", [False, True])
def test_analytic_flops_equal_the_executed_products(scheme, gate_first_layer):
    """vcinr.meta.flops counts exactly the matrix products PyTorch runs: none is redundant."""
    from torch.utils.flop_counter import FlopCounterMode

    from vcinr.meta.flops import decode_flops, encode_flops, meta_step_flops

    model = make_model(scheme, torch.float32, gate_first_layer=gate_first_layer).train()
    coords, targets = make_batch(torch.float32)
    batch, points = targets.shape[:2]
    for second_order in (True, False):
        with FlopCounterMode(display=False) as counter:
            model.meta_loss(coords, targets, second_order=second_order).backward()
        assert counter.get_total_flops() == meta_step_flops(model, batch, points, second_order=second_order)
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        state = model.adapt(coords, targets)
    assert counter.get_total_flops() == encode_flops(model, batch, points)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.decode(coords, model.conditioning.code(state))
    assert counter.get_total_flops() == decode_flops(model, batch, points).forward


# --- the meta-step split over threads (meta.performance.meta_backward) --------------------------


def split_backward(model, coords, targets, workers, seed=5):
    from vcinr.meta.performance import meta_backward

    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss = meta_backward(model.meta_loss, list(model.parameters()), coords, targets, workers)
    return loss, {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("per_item_coords", [False, True])
@pytest.mark.parametrize("scheme", ["functa", "vcinr"])
def test_split_meta_step_equals_one_batch(scheme, per_item_coords):
    """Splitting the batch over 2 or 3 threads (parts of 2+2 and 1+1+2 items) is the same step."""
    model = make_model(scheme, torch.float64).train()
    coords, targets = make_batch(torch.float64)
    if per_item_coords:
        coords = coords.expand(targets.shape[0], *coords.shape) + 0.01 * torch.rand(targets.shape[0], *coords.shape,
                                                                                       dtype=torch.float64)
    whole_loss, whole = split_backward(model, coords, targets, workers=1)
    for workers in (2, 3):
        loss, grads = split_backward(model, coords, targets, workers)
        assert_close(loss, whole_loss, torch.float64)
        assert grads.keys() == whole.keys()
        for name in whole:
            assert_close(grads[name], whole[name], torch.float64)


def test_split_meta_step_draws_each_parts_noise_from_its_own_generator():
    """MSCN's gate noise: repeatable whatever the threads' timing, and each part's own draw."""
    from vcinr.inr import noise

    model = make_model("mscn", torch.float64).train()
    coords, targets = make_batch(torch.float64)
    loss, grads = split_backward(model, coords, targets, workers=2)
    again_loss, again = split_backward(model, coords, targets, workers=2)
    assert torch.equal(loss, again_loss) and all(torch.equal(grads[n], again[n]) for n in grads)

    # The same parts computed one after the other, each under a generator seeded as the step seeds it.
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    seeds = torch.randint(0, 2**62, (2,)).tolist()
    expected = torch.zeros((), dtype=torch.float64)
    for part, seed in zip((slice(0, 2), slice(2, 4)), seeds):
        with noise.thread_generator(torch.Generator().manual_seed(seed)):
            part_loss = model.meta_loss(coords, targets[part]) / 2
        part_loss.backward()
        expected += part_loss.detach()
    assert_close(loss, expected, torch.float64)
    for name, p in model.named_parameters():
        assert_close(grads[name], p.grad, torch.float64)
    unsplit_loss, _ = split_backward(model, coords, targets, workers=1)
    assert abs(unsplit_loss - loss) > 1e-5  # other noise than the global generator's (float rounding: ~1e-16)
