"""The factorised density model ("entropy bottleneck") of Ballé et al. (2018), in plain torch.

A port of CompressAI 1.2.8's ``EntropyBottleneck`` (BSD-3-Clause-Clear, InterDigital), so
that vcinr does not depend on CompressAI: its import alone pulled in torchvision and
torch-geometric (several GB of install, seconds of start-up).  The port keeps CompressAI's
parameter and buffer names and shapes, its initialisation, its random-number use and its
arithmetic, so a transform coder trains, checkpoints and resumes as before and
:meth:`EntropyBottleneck.update` gives the same 16-bit tables (``tests/test_bottleneck.py``
checks both against a fixture made with CompressAI).

Per channel ``c`` the model is a learned CDF ``sigmoid(f_c(x))``, where ``f_c`` is a small
monotone network (``softplus`` weights, ``tanh`` gates); a symbol's likelihood is the CDF's
increase over ``[x - ½, x + ½]``.  The three ``quantiles`` per channel (tail, median, tail)
are learned by the auxiliary loss and fixed by bisection in :meth:`update`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vcinr.codec.entropy import PRECISION, pmf_to_quantized_cdf


class _LowerBoundFunction(torch.autograd.Function):
    """``max(x, bound)`` whose gradient still flows while it pushes ``x`` up towards ``bound``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, bound = ctx.saved_tensors
        return ((x >= bound) | (grad_output < 0)) * grad_output, None


class LowerBound(nn.Module):
    """Keeps likelihoods above ``bound`` (so ``log2`` stays finite) without killing their gradient."""

    def __init__(self, bound: float):
        super().__init__()
        self.register_buffer("bound", torch.Tensor([float(bound)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LowerBoundFunction.apply(x, self.bound)


class EntropyBottleneck(nn.Module):
    """Factorised prior over ``channels`` code dimensions; inputs are ``(batch, channels)``."""

    def __init__(self, channels: int, tail_mass: float = 1e-9, init_scale: float = 10.0,
                 filters: tuple[int, ...] = (3, 3, 3, 3), likelihood_bound: float = 1e-9):
        super().__init__()
        self.channels = int(channels)
        self.filters = tuple(int(f) for f in filters)
        self.init_scale = float(init_scale)
        self.tail_mass = float(tail_mass)
        self.likelihood_lower_bound = LowerBound(likelihood_bound)
        # the integer tables, filled by update(); buffers so that checkpoints carry them
        self.register_buffer("_offset", torch.IntTensor())
        self.register_buffer("_quantized_cdf", torch.IntTensor())
        self.register_buffer("_cdf_length", torch.IntTensor())

        sizes = (1, *self.filters, 1)
        scale = self.init_scale ** (1 / (len(self.filters) + 1))
        self.matrices, self.biases, self.factors = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for i in range(len(self.filters) + 1):
            init = math.log(math.expm1(1 / scale / sizes[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((self.channels, sizes[i + 1], sizes[i]), init)))
            bias = torch.empty(self.channels, sizes[i + 1], 1)
            nn.init.uniform_(bias, -0.5, 0.5)
            self.biases.append(nn.Parameter(bias))
            if i < len(self.filters):
                self.factors.append(nn.Parameter(torch.zeros(self.channels, sizes[i + 1], 1)))
        quantiles = torch.Tensor([-self.init_scale, 0, self.init_scale])
        self.quantiles = nn.Parameter(quantiles.repeat(self.channels, 1, 1))
        target = math.log(2 / self.tail_mass - 1)
        self.register_buffer("target", torch.Tensor([-target, 0, target]))

    @property
    def medians(self) -> torch.Tensor:
        """``(channels,)``: the centre that symbols are rounded around."""
        return self.quantiles[:, 0, 1]

    def _logits_cumulative(self, inputs: torch.Tensor, stop_gradient: bool) -> torch.Tensor:
        logits = inputs
        for i in range(len(self.filters) + 1):
            matrix, bias = self.matrices[i], self.biases[i]
            if stop_gradient:
                matrix, bias = matrix.detach(), bias.detach()
            logits = torch.matmul(F.softplus(matrix), logits) + bias
            if i < len(self.filters):
                factor = self.factors[i].detach() if stop_gradient else self.factors[i]
                logits = logits + torch.tanh(factor) * torch.tanh(logits)
        return logits

    def _likelihood(self, inputs: torch.Tensor, stop_gradient: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lower = self._logits_cumulative(inputs - 0.5, stop_gradient)
        upper = self._logits_cumulative(inputs + 0.5, stop_gradient)
        return torch.sigmoid(upper) - torch.sigmoid(lower), lower, upper

    def forward(self, x: torch.Tensor, training: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x̂, likelihoods)``: ``x`` plus ``U(-½, ½)`` noise when training, else rounded around the medians."""
        if training is None:
            training = self.training
        values = x.transpose(0, 1).contiguous().reshape(self.channels, 1, -1)
        if training:
            outputs = values + torch.empty_like(values).uniform_(-0.5, 0.5)
        else:
            medians = self.quantiles[:, :, 1:2]
            outputs = torch.round(values - medians) + medians
        likelihood = self.likelihood_lower_bound(self._likelihood(outputs)[0])
        back = (self.channels, x.shape[0])
        return (outputs.reshape(back).transpose(0, 1).contiguous(),
                likelihood.reshape(back).transpose(0, 1).contiguous())

    def loss(self) -> torch.Tensor:
        """Auxiliary loss: moves the quantiles to where the CDF is ``tail_mass / 2``, ½, ``1 - tail_mass / 2``."""
        logits = self._logits_cumulative(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.target).sum()

    @torch.no_grad()
    def _update_quantiles(self, search_radius: float = 1e5, rtol: float = 1e-4, atol: float = 1e-3) -> None:
        """Set the quantiles by bisection (more precise than what the auxiliary loss reaches)."""
        shape = (self.channels, 1, 1)
        device = self.quantiles.device
        for i in range(len(self.target)):
            target = self.target[i]
            low = torch.full(shape, -search_radius, device=device)
            high = torch.full(shape, search_radius, device=device)
            f = lambda y: self._logits_cumulative(y, stop_gradient=True)  # noqa: E731
            low = torch.where(target <= f(high), low, high)
            high = torch.where(f(low) <= target, high, low)
            while not torch.isclose(low, high, rtol=rtol, atol=atol).all():
                mid = (low + high) / 2
                f_mid = f(mid)
                low = torch.where(f_mid <= target, mid, low)
                high = torch.where(f_mid >= target, mid, high)
            self.quantiles[:, :, i] = ((low + high) / 2)[:, :, 0]

    @torch.no_grad()
    def update(self) -> None:
        """Fix the quantiles, then quantise the density into one 16-bit CDF per channel.

        Row ``c`` of the tables covers the integers ``offset[c] .. offset[c] + length[c] - 3``
        around the median, then one escape symbol whose probability is the two tails' mass.
        """
        self._update_quantiles()
        medians = self.quantiles[:, 0, 1]
        minima = torch.ceil(medians - self.quantiles[:, 0, 0]).int().clamp(min=0)
        maxima = torch.ceil(self.quantiles[:, 0, 2] - medians).int().clamp(min=0)
        pmf_start = medians - minima
        pmf_length = maxima + minima + 1
        max_length = int(pmf_length.max())
        samples = torch.arange(max_length, device=medians.device)[None, :] + pmf_start[:, None, None]
        pmf, lower, upper = self._likelihood(samples, stop_gradient=True)
        pmf = pmf[:, 0, :]
        tail_mass = torch.sigmoid(lower[:, 0, :1]) + torch.sigmoid(-upper[:, 0, -1:])
        cdf = torch.zeros((self.channels, max_length + 2), dtype=torch.int32)
        for c, n in enumerate(pmf_length.tolist()):
            row = pmf_to_quantized_cdf(torch.cat((pmf[c, :n], tail_mass[c])).tolist(), PRECISION)
            cdf[c, : len(row)] = torch.tensor(row, dtype=torch.int32)
        self._offset = -minima
        self._quantized_cdf = cdf
        self._cdf_length = pmf_length + 2
