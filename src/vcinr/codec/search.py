"""Encoder-side rate–distortion search: better symbols for the same decoder.

Plain encoding rounds the analysis transform's output ``y = g_a(normalise(φ)) − m`` of each
patch's latent φ.  But ``g_a`` was trained on average latents, and rounding is blind to what it
costs on the data.  Here the continuous symbols ``y`` of every patch are optimised directly for
the level's own rate–distortion objective, measured on the decoded signal through the fixed
synthesis transform and INR:

    bits(ŷ) + λ · 255² · Σ_points loss(f(x; g_s(ŷ)), features) / C          per patch,

which summed over patches and divided by the signal's points is exactly ``bpp + λ·255²·MSE`` of
the whole signal (the loss ``fit-codec`` trained the level with), edge padding excluded.
Rounding is passed straight through (``ŷ = y + (round(y) − y)`` with the bracket detached), so
the distortion is always that of the symbols the decoder will see, and the rate comes from
the level's own quantised tables, interpolated linearly between symbols so that it has a
gradient.  Every step evaluates the exact objective of the rounded symbols, and each patch keeps
the best symbols it has seen — starting from plain rounding, so the search never does worse
than plain encoding on its objective.  The bitstream and the decoder do not change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm import tqdm

from vcinr.codec.codecs import LatentCodec, LearnedCodec
from vcinr.codec.entropy import PRECISION, EntropyTables
from vcinr.meta.metasgd import MetaINR

DISTORTION_SCALE = 255.0**2  # fit-codec's convention: bpp + λ·255²·distortion
OUTSIDE_BITS = 8.0  # slope of the rate proxy beyond a table: escaped values cost a bypass code


@dataclass(frozen=True)
class SearchSettings:
    """``steps`` of Adam on the continuous symbols (0: plain rounding), step size in symbol units."""

    steps: int = 20
    lr: float = 0.05


class RateProxy:
    """Bits of continuous symbols under quantised tables: exact at integers, linear between them."""

    def __init__(self, tables: EntropyTables):
        frequencies = tables.frequencies()
        width = max(len(f) - 1 for f in frequencies)
        self.costs = torch.full((tables.dims, width), float("inf"))
        for k, freq in enumerate(frequencies):
            regular = freq[:-1].double() / 2**PRECISION
            self.costs[k, : len(regular)] = (-torch.log2(regular)).float()
        self.last = torch.tensor([len(f) - 2 for f in frequencies])  # index of each table's last symbol
        self.offset = tables.offset.float()

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        """Bits of every row of ``y (B, K)``, ``(B,)``."""
        u = y - self.offset
        inside = torch.minimum(u.clamp_min(0.0), self.last.float())
        low = inside.floor().long().clamp(max=torch.clamp(self.last - 1, min=0))
        high = torch.minimum(low + 1, self.last.expand_as(low))
        frac = inside - low.float()
        costs = self.costs.expand(y.shape[0], -1, -1)
        c_low = costs.gather(2, low.unsqueeze(-1)).squeeze(-1)
        c_high = costs.gather(2, high.unsqueeze(-1)).squeeze(-1)
        bits = (1.0 - frac) * c_low + frac * c_high + OUTSIDE_BITS * (u - inside).abs()
        return bits.sum(-1)


def search_symbols(model: MetaINR, codec: LearnedCodec, coords: torch.Tensor, features: torch.Tensor,
                   phi: torch.Tensor, lam: float, settings: SearchSettings = SearchSettings(),
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Symbols ``(B, K)`` for patches ``features (B, N, C)`` with latents ``phi (B, D)`` (see the module docstring).

    ``coords`` are the shared item coordinates ``(N, in_dim)``; ``mask (B, N)`` marks the
    points that belong to the signal (``None``: all).
    """
    with torch.no_grad():
        y0 = codec.analysis(phi)
    if settings.steps <= 0:
        return torch.round(y0).to(torch.int32)
    rate = RateProxy(codec.tables)
    weight = (mask.float() if mask is not None else features.new_ones(features.shape[:2])).unsqueeze(-1)
    scale = lam * DISTORTION_SCALE / features.shape[-1]

    def objective(y_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per patch: the exact objective of ``round(y_hat)`` and a differentiable stand-in."""
        rounded = y_hat + (torch.round(y_hat) - y_hat).detach()
        pred = model.render(coords, model.conditioning.modulations_from_code(codec.synthesis(rounded)))
        distortion = (model.point_loss(pred, features) * weight).flatten(1).sum(1) * scale
        return rate(rounded) + distortion, rate(y_hat) + distortion

    y = y0.clone().requires_grad_(True)
    best_y, best = y0.clone(), None
    optimiser = torch.optim.Adam([y], lr=settings.lr)
    for step in range(settings.steps + 1):
        with torch.enable_grad():
            exact, proxy = objective(y)
        with torch.no_grad():
            better = torch.ones_like(exact, dtype=torch.bool) if best is None else exact < best
            best = exact.detach() if best is None else torch.where(better, exact.detach(), best)
            best_y[better] = y.detach()[better]
        if step == settings.steps:
            break
        optimiser.zero_grad(set_to_none=True)
        (grad,) = torch.autograd.grad(proxy.sum(), y)
        y.grad = grad
        optimiser.step()
    return torch.round(best_y).to(torch.int32)


def level_symbols(model: MetaINR, codec: LatentCodec, lam: float | None, coords: torch.Tensor,
                  features: torch.Tensor, phi: torch.Tensor, mask: torch.Tensor | None,
                  settings: SearchSettings, batch: int, progress: bool = False) -> torch.Tensor:
    """The symbols an encoder writes for latents ``phi`` of items ``features``: searched where it can be.

    The search needs a learned level (its λ and differentiable synthesis) and items sharing one
    coordinate grid; uniform levels and per-item coordinates (scenes) are rounded plainly.
    """
    if settings.steps <= 0 or lam is None or not isinstance(codec, LearnedCodec) or coords.dim() != 2:
        return codec.to_symbols(phi)
    starts = range(0, phi.shape[0], batch)
    parts = [search_symbols(model, codec, coords, features[s : s + batch], phi[s : s + batch], lam, settings,
                            mask[s : s + batch] if mask is not None else None)
             for s in tqdm(starts, desc="encode (rate-distortion search)", unit="batch", disable=not progress,
                           leave=False)]
    return torch.cat(parts)
