"""Training-time transform coder: g_a, g_s and the factorised entropy bottleneck.

:class:`TransformCoder` is the differentiable model of Algorithm 2 (paper appendix D): in
``noise`` mode the code is perturbed with ``U(-½, ½)`` noise (Ballé et al., 2017) and its
rate comes from the bottleneck's continuous density; in ``round`` mode it is rounded
(around the bottleneck's medians) as at inference.  After training, :meth:`to_codec` freezes
the bottleneck into 16-bit CDF tables and returns the :class:`~vcinr.codec.codecs.LearnedCodec`
that encoder and decoder use.

Only ``fit-codec`` needs this module; the bottleneck is :mod:`vcinr.codec.bottleneck`.
"""

from __future__ import annotations

import torch
from torch import nn

from vcinr.codec.bottleneck import EntropyBottleneck
from vcinr.codec.codecs import LearnedCodec, ResidualMLP
from vcinr.codec.entropy import EntropyTables

QUANTILES = "entropy_bottleneck.quantiles"  # trained by the auxiliary loss only


class TransformCoder(nn.Module):
    """``φ → normalise → g_a → z → ẑ (noise | round) → g_s → denormalise → φ̂``.

    Args:
        mean, std: train-set statistics of φ ``(D,)`` (stored as buffers).
        width, blocks: the residual MLPs' hidden width and number of residual blocks.
        z_dim: dimension of the code z.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, width: int, blocks: int, z_dim: int):
        super().__init__()
        dim = mean.shape[0]
        self.register_buffer("mean", mean.detach().float().clone())
        self.register_buffer("std", std.detach().float().clone())
        self.g_a = ResidualMLP(dim, z_dim, width, blocks)
        self.g_s = ResidualMLP(z_dim, dim, width, blocks)
        self.entropy_bottleneck = EntropyBottleneck(z_dim)
        self.arch = {"width": int(width), "blocks": int(blocks), "z_dim": int(z_dim)}

    def forward(self, phi: torch.Tensor, mode: str = "noise") -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(φ̂ (B, D), likelihoods (B, z_dim))``; rate in bits is ``-log2(likelihoods).sum(1)``."""
        if mode not in ("noise", "round"):
            raise ValueError(f"mode must be 'noise' or 'round', got {mode!r}")
        z = self.g_a((phi - self.mean) / self.std)
        z_hat, likelihoods = self.entropy_bottleneck(z, training=mode == "noise")
        return self.g_s(z_hat) * self.std + self.mean, likelihoods

    def code(self, phi: torch.Tensor) -> torch.Tensor:
        """The continuous code ``z = g_a(normalise(φ))``."""
        return self.g_a((phi - self.mean) / self.std)

    def aux_loss(self) -> torch.Tensor:
        """The bottleneck's auxiliary loss that fits the bottleneck's quantiles (its coding range)."""
        return self.entropy_bottleneck.loss()

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(main parameters, quantile parameters), for the two optimisers."""
        named = dict(self.named_parameters())
        return [p for n, p in named.items() if n != QUANTILES], [named[QUANTILES]]

    def resize_entropy_buffers(self, tensors: dict[str, torch.Tensor]) -> None:
        """Give the bottleneck's CDF buffers the saved shapes so ``load_state_dict`` accepts them."""
        for name in ("_quantized_cdf", "_offset", "_cdf_length"):
            key = f"entropy_bottleneck.{name}"
            if key in tensors:
                setattr(self.entropy_bottleneck, name, torch.zeros_like(tensors[key]))

    @torch.no_grad()
    def to_codec(self) -> LearnedCodec:
        """Freeze the bottleneck into integer CDFs (quantile search + ``update``) → inference codec."""
        eb = self.entropy_bottleneck
        eb.update()
        tables = EntropyTables(eb._quantized_cdf.clone(), eb._cdf_length.clone(), eb._offset.clone())
        medians = eb.medians.detach().clone()
        g_a = ResidualMLP(self.mean.shape[0], self.arch["z_dim"], self.arch["width"], self.arch["blocks"])
        g_s = ResidualMLP(self.arch["z_dim"], self.mean.shape[0], self.arch["width"], self.arch["blocks"])
        g_a.load_state_dict(self.g_a.state_dict())
        g_s.load_state_dict(self.g_s.state_dict())
        return LearnedCodec(g_a, g_s, medians, tables, self.mean.clone(), self.std.clone())
