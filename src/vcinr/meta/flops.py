"""Analytic matmul FLOPs of the Meta-SGD computations, for the speed benchmarks.

The count is derived from the network's shapes, not measured: every matrix product the
algorithm needs (``2·m·k·n`` FLOPs each), in the forward computation and — where a gradient
is taken — in its backward pass, where a product costs one more product per operand that
needs a gradient (two for activations × weights, one where an operand is the fixed
coordinate grid).  Elementwise work (sines, cosines, sigmoids) is not counted: it is the
overhead that the achieved GFLOP/s figure exposes.  ``tests/test_speed_equivalence.py``
checks these counts against the products PyTorch actually executes.

The inner-loop gradient is the explicit one of :meth:`Siren.modulation_grads`: per sine
layer at and above the lowest modulated one it needs ``∂L/∂h`` of the layer below (one
product, not at the lowest layer) and, for gated layers, the per-item weight-gradient
product ``δᵀ h`` (one more product of the same size).
"""

from __future__ import annotations

from dataclasses import dataclass

from vcinr.inr.conditioning import Conditioning, GatedConditioning, ShiftConditioning, SparseShiftConditioning
from vcinr.meta.metasgd import MetaINR


@dataclass
class MatmulWork:
    """Matmul FLOPs of a computation: ``forward`` and the ``backward`` of its gradient."""

    forward: int = 0
    backward: int = 0

    @property
    def total(self) -> int:
        return self.forward + self.backward

    def product(self, m: int, k: int, n: int, grad_operands: int = 2) -> None:
        flops = 2 * m * k * n
        self.forward += flops
        self.backward += flops * grad_operands

    def __iadd__(self, other: MatmulWork) -> MatmulWork:
        self.forward += other.forward
        self.backward += other.backward
        return self


def _linear(work: MatmulWork, rows: int, fan_in: int, fan_out: int) -> None:
    work.product(rows, fan_in, fan_out)


def _conditioning(cond: Conditioning, batch: int, pullback: bool) -> MatmulWork:
    """Products of the conditioning network's forward (and pull-back of the inner gradient)."""
    work = MatmulWork()
    if isinstance(cond, (ShiftConditioning, SparseShiftConditioning)):
        shifts = cond.to_shifts.out_features
        _linear(work, batch, cond.latent_dim, shifts)
        if pullback:
            _linear(work, batch, shifts, cond.latent_dim)
        return work
    if not isinstance(cond, GatedConditioning):
        raise TypeError(f"no FLOP model for {type(cond).__name__}")
    linears = [cond.inp] + [fc for block in cond.blocks for fc in (block.fc1, block.fc2)] + [cond.to_factors]
    for layer in linears:
        _linear(work, batch, layer.in_features, layer.out_features)
    for (fan_out, fan_in), gated in zip(cond.layer_shapes, cond.gated):
        if gated:
            work.product(batch * fan_out, cond.rank, fan_in)  # U Vᵀ
            if pullback:
                work.product(batch * fan_out, fan_in, cond.rank)  # ∂L/∂U = ∂L/∂(UVᵀ) V
                work.product(batch * fan_in, fan_out, cond.rank)  # ∂L/∂V = ∂L/∂(UVᵀ)ᵀ U
    if pullback:
        for layer in linears:
            _linear(work, batch, layer.out_features, layer.in_features)
    return work


def _modulated(cond: Conditioning, depth: int) -> tuple[list[bool], list[bool]]:
    """Which sine layers get a shift and which a gate."""
    if isinstance(cond, GatedConditioning):
        return [False] * depth, list(cond.gated)
    return [True] * depth, [False] * depth


def _siren(model: MetaINR, batch: int, points: int, inner_grad: bool) -> MatmulWork:
    """The SIREN's products for ``batch`` items of ``points`` shared coordinates."""
    siren, work = model.siren, MatmulWork()
    shifted, gated = _modulated(model.conditioning, siren.depth)
    modulated = [s or g for s, g in zip(shifted, gated)]
    lowest = modulated.index(True) if any(modulated) else siren.depth
    for index, (fan_out, fan_in) in enumerate(siren.layer_shapes):
        batched = index > lowest or gated[index]  # shared coordinates stay un-batched until modulated
        work.product(batch * points if batched else points, fan_in, fan_out, 1 if index == 0 else 2)
    rows = batch * points if lowest < siren.depth else points
    _linear(work, rows, siren.width, siren.out_dim)
    if inner_grad and lowest < siren.depth:
        work.product(rows, siren.out_dim, siren.width)  # ∂L/∂h of the last sine layer
        for index in range(siren.depth - 1, lowest - 1, -1):
            fan_out, fan_in = siren.layer_shapes[index]
            if gated[index]:  # the per-item weight-gradient product δᵀ h
                work.product(batch * fan_out, points, fan_in, 1 if index == 0 else 2)
            if index > lowest:  # ∂L/∂h of the layer below
                work.product(batch * points, fan_out, fan_in)
    return work


def inner_gradient_flops(model: MetaINR, batch: int, points: int) -> MatmulWork:
    """One evaluation of every item's inner-loop gradient (one Meta-SGD inner step)."""
    work = _conditioning(model.conditioning, batch, pullback=True)
    work += _siren(model, batch, points, inner_grad=True)
    return work


def decode_flops(model: MetaINR, batch: int, points: int) -> MatmulWork:
    """Reconstructing ``batch`` items from their latents (conditioning + SIREN forward)."""
    work = _conditioning(model.conditioning, batch, pullback=False)
    work += _siren(model, batch, points, inner_grad=False)
    return work


def meta_step_flops(model: MetaINR, batch: int, points: int, steps: int | None = None,
                    second_order: bool = True) -> int:
    """One outer step: ``steps`` inner steps, the post-adaptation loss and its gradient."""
    steps = model.inner_steps if steps is None else steps
    inner, loss = inner_gradient_flops(model, batch, points), decode_flops(model, batch, points)
    if second_order:
        return steps * inner.total + loss.total
    return steps * inner.forward + loss.total


def encode_flops(model: MetaINR, items: int, points: int, steps: int | None = None) -> int:
    """Fitting the latents of ``items`` items without meta-gradient (the encoder's inner loop)."""
    steps = model.inner_steps if steps is None else steps
    return steps * inner_gradient_flops(model, items, points).forward
