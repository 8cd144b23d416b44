"""How a per-item latent specialises the shared SIREN: the three schemes the paper compares.

* :class:`ShiftConditioning` — Functa / COIN++: a linear map from the latent to the shift
  modulations of every layer (Dupont et al., 2022).
* :class:`SparseShiftConditioning` — MSCN (Schwarz & Teh, 2022): shift modulations whose
  entries are switched off by hard-concrete L0 gates (Louizos et al., 2018) that are
  themselves adapted in the inner loop, so only a few entries per item stay non-zero.
* :class:`GatedConditioning` — VC-INR (eq. 2–3): LayerNorm(φ) → residual LeakyReLU MLP →
  per-layer low-rank factors U, V → soft gates σ(UVᵀ) ⊙ W.

Every scheme maps the inner-loop *state* of a batch of items, shape ``(B, state_dim)``, to
:class:`~vcinr.inr.siren.Modulations`.  For Functa and VC-INR the state is the latent φ
itself; MSCN's state also carries the per-item gate logits.  ``code(state)`` is the vector
that is stored (quantised and entropy coded), and ``modulations_from_code`` is what the
decoder runs, so the codec never needs to know which scheme it is compressing.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import nn
from torch.nn import functional as F

from vcinr.inr.siren import Modulations


class Conditioning(nn.Module, ABC):
    """Base class: a latent of ``latent_dim`` entries per item conditions the SIREN."""

    latent_dim: int

    @property
    def state_dim(self) -> int:
        """Entries per item that the inner loop adapts (the latent, plus any extras)."""
        return self.latent_dim

    def initial_state(self) -> torch.Tensor:
        """Default start of the inner loop before meta-learning moves it: zeros."""
        return torch.zeros(self.state_dim)

    def modulations(self, state: torch.Tensor, stochastic: bool = False) -> Modulations:
        """Modulations for the inner loop; ``stochastic`` samples noisy gates (MSCN training)."""
        return self.modulations_from_code(self.code(state))

    def code(self, state: torch.Tensor) -> torch.Tensor:
        """The per-item vector φ that is compressed, shape ``(B, latent_dim)``."""
        return state

    @abstractmethod
    def modulations_from_code(self, code: torch.Tensor) -> Modulations:
        """What the decoder runs: modulations of every layer from the stored φ."""

    def inner_penalty(self, state: torch.Tensor) -> torch.Tensor:
        """Extra per-item term of the inner-loop loss, shape ``(B,)`` (zero by default)."""
        return state.new_zeros(state.shape[0])


def _split_shifts(flat: torch.Tensor, layer_shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    sizes = [fan_out for fan_out, _ in layer_shapes]
    return list(torch.split(flat, sizes, dim=-1))


class ShiftConditioning(Conditioning):
    """Functa / COIN++: ``shifts = W' φ + b'`` for every sine layer."""

    def __init__(self, latent_dim: int, layer_shapes: list[tuple[int, int]]):
        super().__init__()
        self.latent_dim = latent_dim
        self.layer_shapes = layer_shapes
        self.to_shifts = nn.Linear(latent_dim, sum(o for o, _ in layer_shapes))
        nn.init.zeros_(self.to_shifts.bias)  # φ = 0 leaves the base network unmodulated

    def modulations_from_code(self, code: torch.Tensor) -> Modulations:
        shifts = _split_shifts(self.to_shifts(code), self.layer_shapes)
        return Modulations(shifts=shifts, gates=[None] * len(shifts))


class SparseShiftConditioning(Conditioning):
    """MSCN: a latent whose entries are pruned per item by hard-concrete L0 gates.

    The inner-loop state is ``[values, gate_logits]`` (``2 × latent_dim``).  In training the
    gates are sampled with the hard-concrete reparameterisation and the expected number of
    open gates is penalised (``l0_weight``); at evaluation the gates are deterministic and
    only the ``budget`` most open entries are kept, so ``budget`` — the paper's dim(φ) — is
    the number of non-zero entries actually stored.
    """

    # Hard-concrete stretch interval and temperature (Louizos et al., 2018).
    GAMMA, ZETA, BETA = -0.1, 1.1, 2.0 / 3.0

    def __init__(
        self,
        latent_dim: int,
        budget: int,
        layer_shapes: list[tuple[int, int]],
        l0_weight: float = 1e-3,
        init_open: float = 0.9,
    ):
        super().__init__()
        if not 0 < budget <= latent_dim:
            raise ValueError(f"MSCN budget must be in (0, latent_dim={latent_dim}], got {budget}")
        self.latent_dim, self.budget, self.l0_weight = latent_dim, budget, l0_weight
        self.layer_shapes = layer_shapes
        self.to_shifts = nn.Linear(latent_dim, sum(o for o, _ in layer_shapes))
        nn.init.zeros_(self.to_shifts.bias)
        self.init_logit = math.log(init_open / (1.0 - init_open))

    @property
    def state_dim(self) -> int:
        return 2 * self.latent_dim

    def initial_state(self) -> torch.Tensor:
        return torch.cat([torch.zeros(self.latent_dim), torch.full((self.latent_dim,), self.init_logit)])

    def _gates(self, logits: torch.Tensor, stochastic: bool) -> torch.Tensor:
        if stochastic:
            u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + logits) / self.BETA)
        else:
            s = torch.sigmoid(logits)
        return (s * (self.ZETA - self.GAMMA) + self.GAMMA).clamp(0.0, 1.0)

    def _keep_budget(self, gates: torch.Tensor) -> torch.Tensor:
        """Zero all but the ``budget`` largest gates of every item."""
        threshold = gates.topk(self.budget, dim=-1).values[..., -1:]
        return torch.where(gates >= threshold, gates, torch.zeros_like(gates))

    def modulations(self, state: torch.Tensor, stochastic: bool = False) -> Modulations:
        values, logits = state.chunk(2, dim=-1)
        gates = self._gates(logits, stochastic)
        if not stochastic:
            gates = self._keep_budget(gates)
        return self.modulations_from_code(values * gates)

    def code(self, state: torch.Tensor) -> torch.Tensor:
        values, logits = state.chunk(2, dim=-1)
        return values * self._keep_budget(self._gates(logits, stochastic=False))

    def modulations_from_code(self, code: torch.Tensor) -> Modulations:
        shifts = _split_shifts(self.to_shifts(code), self.layer_shapes)
        return Modulations(shifts=shifts, gates=[None] * len(shifts))

    def inner_penalty(self, state: torch.Tensor) -> torch.Tensor:
        """``l0_weight`` × expected fraction of open gates (the L0 surrogate of MSCN)."""
        logits = state[..., self.latent_dim :]
        p_open = torch.sigmoid(logits - self.BETA * math.log(-self.GAMMA / self.ZETA))
        return self.l0_weight * p_open.mean(dim=-1)


class ResidualBlock(nn.Module):
    """``x + W2 LeakyReLU(W1 LeakyReLU(x))``: keeps gradients flowing through a deep φ-network."""

    def __init__(self, width: int):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.leaky_relu(self.fc1(F.leaky_relu(x))))


class GatedConditioning(Conditioning):
    """VC-INR: φ → LayerNorm → residual LeakyReLU MLP → σ(U Vᵀ) gating every weight matrix.

    Args:
        latent_dim: dim(φ).
        layer_shapes: ``(fan_out, fan_in)`` of the SIREN's sine layers.
        hidden: width of the φ-network.
        blocks: residual blocks in the φ-network.
        rank: ``d`` in eq. 3, the rank of ``U Vᵀ``.
        gate_first_layer: gate the coordinate layer too (off in all of the paper's tables).
        layer_norm: normalise φ first (the paper's main stabiliser, appendix E.1).

    With default initialisation the factors are O(1), so ``U Vᵀ`` is centred on 0 and the
    gates on ½, where σ is steepest and the inner loop can move them.  The SIREN's gated
    layers start twice as wide (:meth:`compensate_siren_init`) so that the gated weights
    ``G ⊙ W`` keep the SIREN initialisation's scale.
    """

    MEAN_GATE = 0.5

    def __init__(
        self,
        latent_dim: int,
        layer_shapes: list[tuple[int, int]],
        hidden: int = 256,
        blocks: int = 1,
        rank: int = 4,
        gate_first_layer: bool = False,
        layer_norm: bool = True,
    ):
        super().__init__()
        self.latent_dim, self.rank = latent_dim, rank
        self.gated = [i > 0 or gate_first_layer for i in range(len(layer_shapes))]
        self.layer_shapes = layer_shapes
        self.norm = nn.LayerNorm(latent_dim) if layer_norm else nn.Identity()
        self.inp = nn.Linear(latent_dim, hidden)
        self.blocks = nn.Sequential(*(ResidualBlock(hidden) for _ in range(blocks)))
        self.factor_sizes = [
            rank * (fan_out + fan_in) for (fan_out, fan_in), g in zip(layer_shapes, self.gated) if g
        ]
        self.to_factors = nn.Linear(hidden, sum(self.factor_sizes))

    def initial_state(self) -> torch.Tensor:
        """A random start: LayerNorm is degenerate at φ = 0 (zero variance, gradient 1/√eps)."""
        return torch.randn(self.latent_dim)

    def compensate_siren_init(self, siren: nn.Module) -> None:
        """Scale the gated layers' initial weights by 1/E[G] so G ⊙ W keeps SIREN's init scale."""
        with torch.no_grad():
            for layer, gated in zip(siren.hidden, self.gated):
                if gated:
                    layer.weight.div_(self.MEAN_GATE)

    def modulations_from_code(self, code: torch.Tensor) -> Modulations:
        hidden = self.blocks(self.inp(self.norm(code)))
        factors = torch.split(self.to_factors(F.leaky_relu(hidden)), self.factor_sizes, dim=-1)
        gates: list[torch.Tensor | None] = []
        chunks = iter(factors)
        for (fan_out, fan_in), gated in zip(self.layer_shapes, self.gated):
            if not gated:
                gates.append(None)
                continue
            uv = next(chunks)
            u = uv[:, : fan_out * self.rank].reshape(-1, fan_out, self.rank)
            v = uv[:, fan_out * self.rank :].reshape(-1, fan_in, self.rank)
            gates.append(torch.sigmoid(u @ v.transpose(1, 2)))
        return Modulations(shifts=[None] * len(gates), gates=gates)


def build_conditioning(scheme: str, latent_dim: int, layer_shapes: list[tuple[int, int]], **options) -> Conditioning:
    """Construct a conditioning scheme by its config name."""
    schemes = {"functa": ShiftConditioning, "mscn": SparseShiftConditioning, "vcinr": GatedConditioning}
    if scheme not in schemes:
        raise ValueError(f"unknown conditioning {scheme!r}; choose one of {sorted(schemes)}")
    return schemes[scheme](latent_dim=latent_dim, layer_shapes=layer_shapes, **options)
