"""The shared base network: a SIREN (Sitzmann et al., 2020) whose layers can be modulated.

Each sine layer computes ``sin(w0 * ((G ⊙ W) h + b + s))`` where the per-item shift ``s``
(Functa / COIN++ / MSCN) and the per-item soft gate ``G`` (VC-INR, eq. 2–3) are optional
and come from a conditioning module (:mod:`vcinr.inr.conditioning`).  The base network
itself knows nothing about latents: it only consumes :class:`Modulations`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Modulations:
    """Per-item modulations of every sine layer; ``None`` leaves a layer unmodulated.

    ``shifts[l]`` has shape ``(B, width)``; ``gates[l]`` has the shape of layer ``l``'s
    weight with a leading batch axis, ``(B, fan_out, fan_in)``.
    """

    shifts: list[torch.Tensor | None]
    gates: list[torch.Tensor | None]


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
    """

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int, w0: float = 30.0,
                 output_bias: float = 0.0):
        super().__init__()
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

    def forward(self, coords: torch.Tensor, mods: Modulations) -> torch.Tensor:
        """Evaluate the network for a batch of items.

        Args:
            coords: ``(N, in_dim)`` shared by all items, or ``(B, N, in_dim)``.
            mods: modulations with batch size ``B``.

        Returns:
            ``(B, N, out_dim)`` predicted features.
        """
        h = coords
        for layer, shift, gate in zip(self.hidden, mods.shifts, mods.gates):
            if gate is None:
                pre = h @ layer.weight.T + layer.bias
            else:
                weight = gate * layer.weight  # (B, out, in): the item's selected subnetwork
                if h.dim() == 2:
                    h = h.expand(weight.shape[0], *h.shape)
                pre = torch.baddbmm(layer.bias, h, weight.transpose(1, 2))
            if shift is not None:
                pre = pre + shift.unsqueeze(-2)
            h = torch.sin(self.w0 * pre)
        out = self.output(h)
        if out.dim() == 2:  # no modulation at all: give every item the same prediction
            batch = next((m.shape[0] for m in mods.shifts + mods.gates if m is not None), 1)
            out = out.expand(batch, *out.shape)
        return out
