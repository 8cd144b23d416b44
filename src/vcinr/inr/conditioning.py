"""How a per-item latent specialises the shared SIREN: the three schemes the paper compares.

* :class:`ShiftConditioning` — Functa / COIN++: a linear map from the latent to the shift
  modulations of every layer (Dupont et al., 2022).
* :class:`SparseShiftConditioning` — MSCN (Schwarz & Teh, 2022): shift modulations from a
  pool of latent entries behind hard-concrete L0 gates (Louizos et al., 2018) that are
  themselves adapted in the inner loop; every inner step keeps each item's ``budget``
  largest gated entries (hard thresholding), in training as at evaluation, and only those
  are stored.
* :class:`GatedConditioning` — VC-INR (eq. 2–3): LayerNorm(φ) → residual LeakyReLU MLP →
  per-layer low-rank factors U, V → soft gates σ(UVᵀ) ⊙ W.

Every scheme maps the inner-loop *state* of a batch of items, shape ``(B, state_dim)``, to
:class:`~vcinr.inr.siren.Modulations`.  For Functa and VC-INR the state is the latent φ
itself; MSCN's state also carries the per-item gate logits.  ``code(state)`` is the vector
that is stored (quantised and entropy coded), and ``modulations_from_code`` is what the
decoder runs, so the codec never needs to know which scheme it is compressing.

For the Meta-SGD inner loop every scheme also has its backward pass written out:
:meth:`Conditioning.modulations_vjp` returns the modulations together with the map from
gradients w.r.t. the modulations to the gradient w.r.t. the state (a vector-Jacobian
product, as ``torch.func.vjp`` would give), built from plain tensor operations so that the
inner loop needs no nested autograd (see :mod:`vcinr.inr.siren`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from vcinr.inr import noise
from vcinr.inr.siren import Modulations


Pullback = Callable[[Modulations], torch.Tensor]


class Conditioning(nn.Module, ABC):
    """Base class: a latent of ``latent_dim`` entries per item conditions the SIREN."""

    latent_dim: int
    learn_initial_state: bool = True  # whether φ0 is meta-learned or stays where it starts

    @classmethod
    def from_config(cls, latent_dim: int, layer_shapes: list[tuple[int, int]], options: dict) -> Conditioning:
        """Built from a model config: ``latent_dim`` entries stored per item, and the scheme's own
        section of options (``model.<scheme>``; empty for a scheme without one)."""
        return cls(latent_dim=latent_dim, layer_shapes=layer_shapes, **options)

    def compensate_siren_init(self, siren: nn.Module) -> None:
        """Adjust the freshly initialised SIREN this scheme conditions (nothing, unless a scheme needs it)."""

    @property
    def state_dim(self) -> int:
        """Entries per item that the inner loop adapts (the latent, plus any extras)."""
        return self.latent_dim

    def initial_state(self) -> torch.Tensor:
        """Default start of the inner loop before meta-learning moves it: zeros."""
        return torch.zeros(self.state_dim)

    def modulations(self, state: torch.Tensor, stochastic: bool = False) -> Modulations:
        """Modulations for the inner loop; ``stochastic`` samples noisy gates (MSCN training)."""
        return self.modulations_vjp(state, stochastic)[0]

    @abstractmethod
    def modulations_vjp(self, state: torch.Tensor, stochastic: bool = False) -> tuple[Modulations, Pullback]:
        """:meth:`modulations` and the pull-back ``∂L/∂modulations ↦ ∂L/∂state``.

        The pull-back takes a :class:`Modulations` of gradients (``None`` where a layer has
        no modulation) and returns ``(B, state_dim)``.  It must reuse the forward's random
        draws, so that it differentiates exactly the modulations it returned.
        """

    def code(self, state: torch.Tensor) -> torch.Tensor:
        """The per-item vector φ that is compressed, shape ``(B, latent_dim)``."""
        return state

    @abstractmethod
    def modulations_from_code(self, code: torch.Tensor) -> Modulations:
        """What the decoder runs: modulations of every layer from the stored φ."""

    def project(self, state: torch.Tensor) -> torch.Tensor:
        """The constraint the inner loop keeps the state on, applied to φ0 and after every
        step (MSCN: each item's budget of non-zero entries); the identity by default."""
        return state

    def inner_penalty(self, state: torch.Tensor) -> torch.Tensor:
        """Extra per-item term of the inner-loop loss, shape ``(B,)`` (zero by default)."""
        return state.new_zeros(state.shape[0])

    def inner_penalty_grad(self, state: torch.Tensor) -> torch.Tensor | None:
        """Gradient of :meth:`inner_penalty` w.r.t. the state; ``None`` when there is none."""
        return None


def _split_shifts(flat: torch.Tensor, layer_shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    sizes = [fan_out for fan_out, _ in layer_shapes]
    return list(torch.split(flat, sizes, dim=-1))


def _shift_vjp(to_shifts: nn.Linear, layer_shapes: list[tuple[int, int]],
               code: torch.Tensor) -> tuple[Modulations, Pullback]:
    """Shifts ``W' φ + b'`` of every layer and the pull-back to ``∂L/∂φ = (∂L/∂shifts) W'``."""
    shifts = _split_shifts(to_shifts(code), layer_shapes)

    def pullback(grads: Modulations) -> torch.Tensor:
        return torch.cat(list(grads.shifts), dim=-1) @ to_shifts.weight

    return Modulations(shifts=shifts, gates=[None] * len(shifts)), pullback


class ShiftConditioning(Conditioning):
    """Functa / COIN++: ``shifts = W' φ + b'`` for every sine layer."""

    def __init__(self, latent_dim: int, layer_shapes: list[tuple[int, int]]):
        super().__init__()
        self.latent_dim = latent_dim
        self.layer_shapes = layer_shapes
        self.to_shifts = nn.Linear(latent_dim, sum(o for o, _ in layer_shapes))
        nn.init.zeros_(self.to_shifts.bias)  # φ = 0 leaves the base network unmodulated

    def modulations_from_code(self, code: torch.Tensor) -> Modulations:
        return _shift_vjp(self.to_shifts, self.layer_shapes, code)[0]

    def modulations_vjp(self, state: torch.Tensor, stochastic: bool = False) -> tuple[Modulations, Pullback]:
        return _shift_vjp(self.to_shifts, self.layer_shapes, state)


class SparseShiftConditioning(Conditioning):
    """MSCN: shift modulations from a latent pool pruned per item to ``budget`` entries.

    The inner-loop state is ``[values, gate_logits]`` (``2 × latent_dim``, the pool).  Every
    entry has a hard-concrete L0 gate (Louizos et al., 2018) whose logit the inner loop adapts
    with its own Meta-SGD step size, sampled in training and deterministic at evaluation, and
    ``l0_weight`` charges the expected fraction of open gates in the inner loss.

    Sparsity is chosen per item by iterative hard thresholding: φ0 and every inner step are
    followed by :meth:`project`, which keeps the ``budget`` values of each item whose gated
    magnitude ``|value × gate|`` is largest and zeroes the others.  The SIREN therefore only
    ever sees ``budget`` non-zero entries — in every inner step and in the outer loss, in
    training as at evaluation — and :meth:`code` stores exactly that network.  A zeroed entry
    still has its true gradient (the loss's slope at value 0), so a step can move it past a
    kept one and the support follows each item's data; all gradients are exact, with no
    straight-through estimate.  (Ranking by the gates alone cannot choose per item: a logit's
    gradient is the data gradient times the entry's value, a thousand times smaller than the
    values' own at the scale they are meta-learned at, so three inner steps leave every item
    with the support of φ0.  Before, the outer loss saw the noisy gates over the whole pool
    while evaluation and encoding cut it to ``budget``, and the longer it trained the more
    the cut cost.)
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

    @classmethod
    def from_config(cls, latent_dim: int, layer_shapes: list[tuple[int, int]], options: dict) -> Conditioning:
        """A pool of ``options["pool"] × latent_dim`` entries, of which each item stores ``latent_dim``."""
        return cls(latent_dim * options["pool"], latent_dim, layer_shapes, l0_weight=options["l0_weight"])

    @property
    def state_dim(self) -> int:
        return 2 * self.latent_dim

    def initial_state(self) -> torch.Tensor:
        # filled in place, not concatenated: on the meta device, where load_model builds the network,
        # cat's kernel is Python and imports torch._dynamo (~1 s of start-up, docs/performance.md)
        state = torch.zeros(self.state_dim)
        state[self.latent_dim :].fill_(self.init_logit)
        return state

    def _gates_and_slope(self, logits: torch.Tensor, stochastic: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The hard-concrete gates (sampled when ``stochastic``) and their derivative w.r.t. the logits."""
        if stochastic:
            u = torch.rand(logits.shape, generator=noise.generator(), dtype=logits.dtype,
                           device=logits.device).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + logits) / self.BETA)
            ds = s * (1 - s) / self.BETA
        else:
            s = torch.sigmoid(logits)
            ds = s * (1 - s)
        stretched = s * (self.ZETA - self.GAMMA) + self.GAMMA
        # clamp passes the gradient where min <= x <= max (inclusive), like autograd's.
        open_ = (stretched >= 0.0) & (stretched <= 1.0)
        return stretched.clamp(0.0, 1.0), torch.where(open_, ds * (self.ZETA - self.GAMMA), torch.zeros_like(ds))

    def _kept(self, values: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Each item's ``budget`` entries of largest deterministic ``|value × gate|``, as a mask.

        Exactly ``budget`` by index: a threshold would keep every tie (the zeros at φ0, gates
        clamped to 1).  A constant of the state: the gradient flows through the kept values.
        """
        gated = (values * self._gates_and_slope(logits, stochastic=False)[0]).detach().abs()
        return torch.zeros_like(gated, dtype=torch.bool).scatter_(-1, gated.topk(self.budget, dim=-1).indices, True)

    def project(self, state: torch.Tensor) -> torch.Tensor:
        """Zero all but each item's ``budget`` largest gated values; the gate logits stay as they are."""
        values, logits = state.chunk(2, dim=-1)
        return torch.cat([torch.where(self._kept(values, logits), values, torch.zeros_like(values)), logits], dim=-1)

    def modulations_vjp(self, state: torch.Tensor, stochastic: bool = False) -> tuple[Modulations, Pullback]:
        values, logits = state.chunk(2, dim=-1)
        gates, slope = self._gates_and_slope(logits, stochastic)
        mods, code_pullback = _shift_vjp(self.to_shifts, self.layer_shapes, values * gates)

        def pullback(grads: Modulations) -> torch.Tensor:
            grad_code = code_pullback(grads)
            return torch.cat([grad_code * gates, grad_code * values * slope], dim=-1)

        return mods, pullback

    def code(self, state: torch.Tensor) -> torch.Tensor:
        """The stored φ: the deterministic gated values of the projected state (``budget`` entries)."""
        values, logits = state.chunk(2, dim=-1)
        gated = values * self._gates_and_slope(logits, stochastic=False)[0]
        return torch.where(self._kept(values, logits), gated, torch.zeros_like(gated))

    def modulations_from_code(self, code: torch.Tensor) -> Modulations:
        return _shift_vjp(self.to_shifts, self.layer_shapes, code)[0]

    def _p_open(self, state: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(state[..., self.latent_dim :] - self.BETA * math.log(-self.GAMMA / self.ZETA))

    def inner_penalty(self, state: torch.Tensor) -> torch.Tensor:
        """``l0_weight`` × expected fraction of open gates (the L0 surrogate of MSCN)."""
        return self.l0_weight * self._p_open(state).mean(dim=-1)

    def inner_penalty_grad(self, state: torch.Tensor) -> torch.Tensor:
        p_open = self._p_open(state)
        grad_logits = p_open * (1 - p_open) * (self.l0_weight / self.latent_dim)
        return torch.cat([torch.zeros_like(grad_logits), grad_logits], dim=-1)


LEAKY_SLOPE = 0.01  # F.leaky_relu's default


def _leaky_relu_vjp(x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    slope = torch.where(x > 0, torch.ones_like(x), torch.full_like(x, LEAKY_SLOPE))
    return F.leaky_relu(x, LEAKY_SLOPE), lambda grad: grad * slope


def _linear_vjp(layer: nn.Linear, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    return layer(x), lambda grad: grad @ layer.weight


class ResidualBlock(nn.Module):
    """``x + W2 LeakyReLU(W1 LeakyReLU(x))``: keeps gradients flowing through a deep φ-network."""

    def __init__(self, width: int):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_vjp(x)[0]

    def forward_vjp(self, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """The block's output and its pull-back ``∂L/∂out ↦ ∂L/∂x``."""
        a1, act1 = _leaky_relu_vjp(x)
        y1, lin1 = _linear_vjp(self.fc1, a1)
        a2, act2 = _leaky_relu_vjp(y1)
        y2, lin2 = _linear_vjp(self.fc2, a2)
        return x + y2, lambda grad: grad + act1(lin1(act2(lin2(grad))))


def _layer_norm_vjp(norm: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """LayerNorm over the last axis (or the identity) and its pull-back, written out."""
    if not isinstance(norm, nn.LayerNorm):
        return x, lambda grad: grad
    centred = x - x.mean(dim=-1, keepdim=True)
    rstd = torch.rsqrt(centred.square().mean(dim=-1, keepdim=True) + norm.eps)
    normed = centred * rstd

    def pullback(grad: torch.Tensor) -> torch.Tensor:
        g = grad * norm.weight
        return rstd * (g - g.mean(dim=-1, keepdim=True) - normed * (g * normed).mean(dim=-1, keepdim=True))

    return normed * norm.weight + norm.bias, pullback


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

    φ0 starts at 0 by default (``phi0_scale = 0``), where LayerNorm's Jacobian is 1/√eps ≈ 316:
    the first inner step throws the normalised latent to unit size in the direction of the
    gradient, whatever its step size — which is what makes three Meta-SGD steps with step sizes
    within ±5 enough to encode an item — but the outer gradient on φ0 there is 10x that of any
    other parameter and a learned φ0 drifting around 0 on the scale of √eps is a suspect of the
    divergence at larger dim(φ).  ``phi0_scale = 1`` starts φ0 at unit scale, where the Jacobian
    is about the identity; with the paper's Meta-SGD step sizes (±5) the inner loop then barely
    moves the latent and training stalls, while step sizes on the latent's scale (init 200)
    trained fastest and without the decay for 3,000 steps (CIFAR-10, dim φ 256, outer lr 1e-3);
    at width 128 / depth 6 it collapsed at outer lr 1e-3 but reached 28.7 dB on held-out Kodak
    at 3e-4 (docs/training.md, "Stability").  ``learn_phi0 =
    False`` keeps φ0 fixed.  The factors start O(1), so ``U Vᵀ`` is centred on 0 and the gates on
    ½, where σ is steepest.  The SIREN's gated
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
        phi0_scale: float = 0.0,
        learn_phi0: bool = True,
    ):
        super().__init__()
        self.latent_dim, self.rank = latent_dim, rank
        self.phi0_scale, self.learn_initial_state = phi0_scale, learn_phi0
        self.gated = [i > 0 or gate_first_layer for i in range(len(layer_shapes))]
        self.layer_shapes = layer_shapes
        self.norm = nn.LayerNorm(latent_dim) if layer_norm else nn.Identity()
        self.inp = nn.Linear(latent_dim, hidden)
        self.blocks = nn.Sequential(*(ResidualBlock(hidden) for _ in range(blocks)))
        self.factor_sizes = [
            rank * (fan_out + fan_in) for (fan_out, fan_in), g in zip(layer_shapes, self.gated) if g
        ]
        self.to_factors = nn.Linear(hidden, sum(self.factor_sizes))
        # Factors of unit scale (3× PyTorch's default): small factors make U Vᵀ second-order
        # small, and the inner loop could then barely move the gates.
        nn.init.normal_(self.to_factors.weight, std=math.sqrt(3.0 / hidden))

    def initial_state(self) -> torch.Tensor:
        """φ0 before meta-learning: N(0, phi0_scale²·I) (zeros at the default scale 0)."""
        # scaled in place: out-of-place arithmetic on the meta device, where load_model builds the
        # network, has a Python kernel that imports torch._dynamo (~1 s of start-up, docs/performance.md)
        return torch.randn(self.latent_dim).mul_(self.phi0_scale)

    def compensate_siren_init(self, siren: nn.Module) -> None:
        """Scale the gated layers' initial weights by 1/E[G] so G ⊙ W keeps SIREN's init scale."""
        with torch.no_grad():
            for layer, gated in zip(siren.hidden, self.gated):
                if gated:
                    layer.weight.div_(self.MEAN_GATE)

    def modulations_from_code(self, code: torch.Tensor) -> Modulations:
        return self.modulations_vjp(code)[0]

    def modulations_vjp(self, state: torch.Tensor, stochastic: bool = False) -> tuple[Modulations, Pullback]:
        pullbacks = []
        x, pullback = _layer_norm_vjp(self.norm, state)
        pullbacks.append(pullback)
        x, pullback = _linear_vjp(self.inp, x)
        pullbacks.append(pullback)
        for block in self.blocks:
            x, pullback = block.forward_vjp(x)
            pullbacks.append(pullback)
        x, pullback = _leaky_relu_vjp(x)
        pullbacks.append(pullback)
        x, pullback = _linear_vjp(self.to_factors, x)
        pullbacks.append(pullback)

        gates: list[torch.Tensor | None] = []
        factors: list[tuple[torch.Tensor, torch.Tensor]] = []
        chunks = iter(torch.split(x, self.factor_sizes, dim=-1))
        for (fan_out, fan_in), gated in zip(self.layer_shapes, self.gated):
            if not gated:
                gates.append(None)
                continue
            uv = next(chunks)
            u = uv[:, : fan_out * self.rank].reshape(-1, fan_out, self.rank)
            v = uv[:, fan_out * self.rank :].reshape(-1, fan_in, self.rank)
            factors.append((u, v))
            gates.append(torch.sigmoid(u @ v.transpose(1, 2)))

        def pullback_all(grads: Modulations) -> torch.Tensor:
            flat = []
            for (u, v), gate, grad in zip(factors, (g for g in gates if g is not None),
                                         (g for g, on in zip(grads.gates, self.gated) if on)):
                grad_logit = grad * gate * (1 - gate)  # through σ, then U Vᵀ
                flat += [(grad_logit @ v).flatten(1), (grad_logit.transpose(1, 2) @ u).flatten(1)]
            grad = torch.cat(flat, dim=-1)
            for pullback in reversed(pullbacks):
                grad = pullback(grad)
            return grad

        return Modulations(shifts=[None] * len(gates), gates=gates), pullback_all


# The schemes by their config names (``model.conditioning``); a new scheme registers here.
CONDITIONINGS: dict[str, type[Conditioning]] = {
    "functa": ShiftConditioning, "mscn": SparseShiftConditioning, "vcinr": GatedConditioning,
}


def conditioning_class(scheme: str) -> type[Conditioning]:
    """The scheme called ``scheme`` in configs."""
    if scheme not in CONDITIONINGS:
        raise ValueError(f"unknown conditioning {scheme!r}; choose one of {sorted(CONDITIONINGS)}")
    return CONDITIONINGS[scheme]


def build_conditioning(scheme: str, latent_dim: int, layer_shapes: list[tuple[int, int]], **options) -> Conditioning:
    """Construct a conditioning scheme by its config name, with its constructor's arguments."""
    return conditioning_class(scheme)(latent_dim=latent_dim, layer_shapes=layer_shapes, **options)
