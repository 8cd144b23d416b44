"""The shared base network: a SIREN (Sitzmann et al., 2020) whose layers can be modulated.

Each sine layer computes ``sin(w0 * ((G ⊙ W) h + b + s))`` where the per-item shift ``s``
(Functa / COIN++ / MSCN) and the per-item soft gate ``G`` (VC-INR, eq. 2–3) are optional
and come from a conditioning module (:mod:`vcinr.inr.conditioning`).  The base network
itself knows nothing about latents: it only consumes :class:`Modulations`.

Besides the forward pass, the network has its backward pass *w.r.t. the modulations*
written out (:meth:`Siren.forward_trace` + :meth:`Siren.modulation_grads`): the Meta-SGD
inner loop needs exactly that gradient, and as plain forward code it needs no
``create_graph`` bookkeeping, runs unchanged under ``torch.no_grad()`` (encoding), and the
second-order outer step is a single ordinary backward pass through it — which
``torch.compile`` can compile, unlike double backward.  ``w0`` is folded into the weights
and biases (small tensors) rather than applied to every pre-activation.  The sines and the
shared-weight products run on the network's :class:`~vcinr.backend.Backend`: by default the
faster CPU kernels for these shapes, ``REFERENCE`` for plain torch ops (docs/performance.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from vcinr.backend import FAST, Backend


@dataclass
class Modulations:
    """Per-item modulations of every sine layer; ``None`` leaves a layer unmodulated.

    ``shifts[l]`` has shape ``(B, width)``; ``gates[l]`` has the shape of layer ``l``'s
    weight with a leading batch axis, ``(B, fan_out, fan_in)``.  The same structure holds
    gradients w.r.t. the modulations (:meth:`Siren.modulation_grads`).
    """

    shifts: list[torch.Tensor | None]
    gates: list[torch.Tensor | None]


class _WeightGradProduct(torch.autograd.Function):
    """Every item's ``δᵀ h`` (``(B, out, in)``), with both gradients in their operands' layout.

    Autograd's ``bmm`` backward would produce the gradient of the transposed operand
    transposed (strided), and adding it to that operand's other gradient then runs at a
    fraction of memory speed; here ``∂/∂δ = h P̄ᵀ`` and ``∂/∂h = δ P̄`` are contiguous.
    ``h`` may be shared by all items (``(N, in)``).
    """

    @staticmethod
    def forward(delta: torch.Tensor, h: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.matmul(delta.transpose(-1, -2), h)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        delta, h = ctx.saved_tensors
        grad_delta = torch.matmul(h, grad.transpose(-1, -2)) if ctx.needs_input_grad[0] else None
        grad_h = None
        if ctx.needs_input_grad[1]:
            grad_h = torch.matmul(delta, grad)
            if h.dim() == 2:  # shared by all items
                grad_h = grad_h.sum(dim=0)
        return grad_delta, grad_h


@dataclass
class SirenTrace:
    """What the explicit backward pass needs from a forward pass.

    ``inputs[l]`` is the input of sine layer ``l``, ``cosines[l]`` is ``cos(w0·pre_l)``
    (``None`` below the lowest modulated layer, where no gradient is needed) and
    ``weights[l]`` the effective weight ``w0·(G ⊙ W)`` (``(B, out, in)``) or ``w0·W``.
    """

    mods: Modulations
    inputs: list[torch.Tensor]
    cosines: list[torch.Tensor | None]
    weights: list[torch.Tensor]


def _lowest_modulated(mods: Modulations) -> int | None:
    """Index of the lowest modulated sine layer (``None`` when none is)."""
    for index, (shift, gate) in enumerate(zip(mods.shifts, mods.gates)):
        if shift is not None or gate is not None:
            return index
    return None


class Siren(nn.Module):
    """``depth`` sine layers of ``width`` units followed by a linear output layer.

    Args:
        in_dim: coordinate dimensions.
        out_dim: feature channels.
        width: units per sine layer.
        depth: number of sine layers (the paper's "network depth").
        w0: frequency factor of every sine layer (30 in all of the paper's tables).
        output_bias: initial output value; the middle of the feature range lets
            meta-learning start from the mean signal instead of spending its first hundreds
            of outer steps moving a zero bias there.
        backend: the kernels of its sines and products (an attribute: set it to
            :data:`vcinr.backend.REFERENCE` to run this network on plain torch ops).
    """

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int, w0: float = 30.0,
                 output_bias: float = 0.0, backend: Backend = FAST):
        super().__init__()
        self.backend = backend
        if depth < 1 or width < 1:
            raise ValueError("a SIREN needs depth >= 1 and width >= 1")
        self.in_dim, self.out_dim, self.width, self.depth, self.w0 = in_dim, out_dim, width, depth, w0
        self.output_bias = output_bias
        fan_ins = [in_dim] + [width] * (depth - 1)
        self.hidden = nn.ModuleList(nn.Linear(f, width) for f in fan_ins)
        self.output = nn.Linear(width, out_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """SIREN initialisation: keeps pre-activations ~ U(-1, 1)-distributed at every depth."""
        with torch.no_grad():
            for i, layer in enumerate(self.hidden):
                fan_in = layer.in_features
                bound = 1.0 / fan_in if i == 0 else math.sqrt(6.0 / fan_in) / self.w0
                layer.weight.uniform_(-bound, bound)
                layer.bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))
            bound = math.sqrt(6.0 / self.width) / self.w0
            self.output.weight.uniform_(-bound, bound)
            self.output.bias.fill_(self.output_bias)

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        """``(fan_out, fan_in)`` of every sine layer, for conditioning modules to size themselves."""
        return [(layer.out_features, layer.in_features) for layer in self.hidden]

    def _scaled_pre(self, index: int, h: torch.Tensor, shift: torch.Tensor | None,
                    gate: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``w0·pre`` of sine layer ``index`` and its effective weight ``w0·(G ⊙ W)``."""
        layer = self.hidden[index]
        weight = layer.weight * self.w0
        bias = (layer.bias if shift is None else layer.bias + shift) * self.w0  # (out,) or (B, out)
        if gate is not None:
            weight = gate * weight  # (B, out, in): the item's selected subnetwork
            if h.dim() == 2:
                h = h.expand(weight.shape[0], *h.shape)
            # The bias is added in place to the fresh product, which autograd does not save.
            return torch.bmm(h, weight.transpose(1, 2)).add_(bias.unsqueeze(-2)), weight
        if shift is None:
            return self.backend.linear(h, weight, bias), weight
        if h.dim() == 3:
            return self.backend.linear(h, weight, bias.unsqueeze(-2)), weight
        # Shared coordinates stay un-batched through the matmul; the per-item shift batches them.
        return self.backend.linear(h, weight) + bias.unsqueeze(-2), weight

    def _output(self, h: torch.Tensor, mods: Modulations) -> torch.Tensor:
        out = self.output(h)
        if out.dim() == 2:  # no modulation at all: give every item the same prediction
            batch = next((m.shape[0] for m in mods.shifts + mods.gates if m is not None), 1)
            out = out.expand(batch, *out.shape)
        return out

    def forward(self, coords: torch.Tensor, mods: Modulations) -> torch.Tensor:
        """Evaluate the network for a batch of items.

        Args:
            coords: ``(N, in_dim)`` shared by all items, or ``(B, N, in_dim)``.
            mods: modulations with batch size ``B``.

        Returns:
            ``(B, N, out_dim)`` predicted features.
        """
        in_place = not torch.is_grad_enabled()  # decoding: no autograd needs the pre-activations
        h = coords
        for index, (shift, gate) in enumerate(zip(mods.shifts, mods.gates)):
            x = self._scaled_pre(index, h, shift, gate)[0]
            h = self.backend.sine(x, out=x) if in_place else torch.sin(x)
        return self._output(h, mods)

    def forward_trace(self, coords: torch.Tensor, mods: Modulations) -> tuple[torch.Tensor, SirenTrace]:
        """:meth:`forward`, also returning what :meth:`modulation_grads` needs."""
        trace = SirenTrace(mods, [], [], [])
        lowest = _lowest_modulated(mods)
        in_place = not torch.is_grad_enabled()
        h = coords
        for index, (shift, gate) in enumerate(zip(mods.shifts, mods.gates)):
            x, weight = self._scaled_pre(index, h, shift, gate)
            trace.inputs.append(h)
            trace.weights.append(weight)
            if lowest is None or index < lowest:  # no gradient flows back this far
                h, cos = (self.backend.sine(x, out=x) if in_place else torch.sin(x)), None
            elif in_place:
                h = self.backend.sine(x)
                cos = self.backend.sine(x, cosine=True, out=x)
            else:
                h, cos = self.backend.sin_cos(x)
            trace.cosines.append(cos)
        return self._output(h, mods), trace

    def modulation_grads(self, trace: SirenTrace, grad_out: torch.Tensor) -> Modulations:
        """Gradients w.r.t. the modulations of ``trace``, given ``grad_out = ∂L/∂output``.

        The backward pass of the SIREN written out: per sine layer ``δ = ∂L/∂(w0·pre) =
        ∂L/∂h ⊙ cos(w0·pre)``; the shift gradient is ``w0 Σ_points δ``, the gate gradient the
        per-item product ``(δᵀ h) ⊙ w0·W``, and ``∂L/∂h_prev = δ (w0·G ⊙ W)``.  Layers below the
        lowest modulated one are skipped.  Items are independent, so each item's gradients
        are those of its own loss.
        """
        mods = trace.mods
        grads = Modulations([None] * self.depth, [None] * self.depth)
        lowest = _lowest_modulated(mods)
        if lowest is None:
            return grads
        in_place = not torch.is_grad_enabled()  # ∂L/∂h is a fresh matmul output nothing else holds
        grad_h = self.backend.linear(grad_out, self.output.weight.t())
        for index in range(self.depth - 1, lowest - 1, -1):
            delta = grad_h.mul_(trace.cosines[index]) if in_place else grad_h * trace.cosines[index]
            if mods.shifts[index] is not None:
                grads.shifts[index] = delta.sum(dim=-2) * self.w0
            if mods.gates[index] is not None:
                product = _WeightGradProduct.apply(delta, trace.inputs[index])
                grads.gates[index] = product * (self.hidden[index].weight * self.w0)
            if index > lowest:
                weight = trace.weights[index]
                grad_h = torch.matmul(delta, weight) if weight.dim() == 3 else self.backend.linear(delta, weight.t())
        return grads
