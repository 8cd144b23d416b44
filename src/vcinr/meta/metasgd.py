"""Meta-SGD (Li et al., 2017) over a conditioned SIREN: paper appendix C, Algorithm 1.

A :class:`MetaINR` holds everything that is shared across items and meta-learned in the
outer loop — the base SIREN θ, the conditioning network, the latent initialisation φ0 and
one inner-loop step size per latent entry — and fits the per-item latent φ with a few
gradient steps from φ0 (the adaptation loop 𝒪 of Figure 1c).

Items are scored either on the network's output at their coordinates (every grid modality:
the fast, hand-written inner gradient) or through an *observation* operator
(:mod:`vcinr.inr.render`: a radiance field seen through volume rendering), whose inner
gradient comes from autograd.  Items with very many coordinates (the rays of a scene) can be
adapted and scored on a random subset of ``max_points`` of them per step.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm

from vcinr.inr import noise
from vcinr.inr.conditioning import Conditioning
from vcinr.inr.render import VolumeRenderer
from vcinr.inr.siren import Modulations, Siren
from vcinr.meta.losses import Loss, get_loss

# Without a meta-gradient (encoding, validation) items are independent, so large batches are
# processed in chunks whose activations stay near this many elements (16 MiB in fp32):
# larger ones spill the caches and get fresh pages from the allocator (2x slower on CPU).
CHUNK_ELEMENTS = 1 << 22


def item_coords(coords: torch.Tensor, index: torch.Tensor | slice) -> torch.Tensor:
    """The coordinates of items ``index``: shared ones ``(N, d)`` as they are, per-item ones ``(B, N, d)`` selected."""
    return coords[index] if coords.dim() == 3 else coords


class MetaINR(nn.Module):
    """Shared INR + meta-learned latent initialisation and per-dimension inner step sizes.

    Args:
        siren: the base network f(·; θ).
        conditioning: maps a latent (inner-loop state) to modulations of ``siren``.
        inner_steps: k, the number of adaptation steps (3 in all of the paper's tables).
        lr_init: ``(low, high)`` of the uniform initialisation of the Meta-SGD step sizes.
        lr_clip: ``(min, max)`` the step sizes are clipped to when used.
        loss: a :class:`~vcinr.meta.losses.Loss` or its name (``"mse"`` for real-valued
            features, ``"bce"`` for occupancies, logits out).
        observation: operator between the network and the features (``None``: the identity).
        max_points: adapt and meta-train on a random subset of at most this many of an item's
            coordinates (``None``: all of them).
    """

    def __init__(
        self,
        siren: Siren,
        conditioning: Conditioning,
        inner_steps: int = 3,
        lr_init: tuple[float, float] = (1.0, 1.0),
        lr_clip: tuple[float, float] = (-5.0, 5.0),
        loss: Loss | str = "mse",
        observation: VolumeRenderer | None = None,
        max_points: int | None = None,
    ):
        super().__init__()
        self.siren, self.conditioning = siren, conditioning
        self.inner_steps, self.lr_clip, self.loss = inner_steps, tuple(lr_clip), get_loss(loss)
        self.observation, self.max_points = observation, max_points
        if conditioning.learn_initial_state:
            self.state0 = nn.Parameter(conditioning.initial_state())
        else:  # a fixed φ0: still saved with the weights, never trained
            self.register_buffer("state0", conditioning.initial_state())
        low, high = lr_init
        self.inner_lr = nn.Parameter(torch.empty(conditioning.state_dim).uniform_(low, high))

    # ----------------------------------------------------------------- evaluation
    def render(self, coords: torch.Tensor, mods: Modulations, stochastic: bool = False) -> torch.Tensor:
        """The network's output as the loss sees it: through the observation operator, if any."""
        if self.observation is None:
            return self.siren(coords, mods)
        return self.observation(lambda points: self.siren(points, mods), coords, stochastic)

    def predict(self, coords: torch.Tensor, state: torch.Tensor, stochastic: bool = False) -> torch.Tensor:
        """Raw network output (features, or occupancy logits) ``(B, N, C)``."""
        return self.render(coords, self.conditioning.modulations(state, stochastic), stochastic)

    def encode(self, coords: torch.Tensor, targets: torch.Tensor, batch_size: int = 64, progress: bool = False,
               desc: str = "encode") -> torch.Tensor:
        """The latents φ ``(B, D)`` a codec stores for items ``targets (B, N, C)``: the inverse of :meth:`decode`.

        The inner loop from φ0 with the frozen network (no meta-gradient), ``batch_size`` items
        at a time.  The batches are part of the result — the fixed-seed point subsample of
        :meth:`subsample` is drawn per batch — so encoders that must give the same bytes keep
        ``batch_size`` fixed.  ``coords`` are shared ``(N, in_dim)`` or per item ``(B, N, in_dim)``.
        """
        out = []
        with torch.no_grad():
            for start in tqdm(range(0, targets.shape[0], batch_size), desc=desc, unit="batch",
                              disable=not progress, leave=False):
                batch = slice(start, start + batch_size)
                out.append(self.conditioning.code(self.adapt(item_coords(coords, batch), targets[batch])))
        return torch.cat(out)

    def decode_raw(self, coords: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Raw network output for latents φ (logits for occupancies): what losses and codec fitting compare."""
        return self.render(coords, self.conditioning.modulations_from_code(code))

    def decode(self, coords: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Features reconstructed from stored latents φ̂ (what the decoder runs), ``(B, N, C)``."""
        chunks = self._chunks(coords, code.shape[0])
        if chunks is not None:
            return torch.cat([self.decode(c, code[i]) for i, c in chunks])
        return self.loss.features(self.decode_raw(coords, code))

    def _chunks(self, coords: torch.Tensor, batch: int) -> list[tuple[slice, torch.Tensor]] | None:
        """Chunks of items for work without autograd; ``None`` when one chunk will do."""
        points = coords.shape[-2] * (self.observation.expansion if self.observation is not None else 1)
        size = max(1, CHUNK_ELEMENTS // (points * self.siren.width))
        if torch.is_grad_enabled() or batch <= size:
            return None
        slices = [slice(start, min(start + size, batch)) for start in range(0, batch, size)]
        return [(i, item_coords(coords, i)) for i in slices]

    def point_loss(self, pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The reconstruction loss of every point and channel, ``pred``'s shape."""
        return self.loss.point_loss(pred, targets)

    def item_loss(self, pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-item reconstruction loss ``(B,)``: mean over points and channels."""
        return self.point_loss(pred, targets).flatten(1).mean(dim=1)

    def subsample(self, coords: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None = None,
                  max_points: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A random subset of ``max_points`` coordinates per item (all when there are fewer).

        ``max_points`` defaults to the model's own (scenes' rays); codec fitting passes a
        smaller one to score its distortion on a sample.  In training the draw uses the
        training RNG (:mod:`vcinr.inr.noise`, seeded per outer step); otherwise a fixed seed, so
        evaluation and encoding are reproducible.  Returns per-item coordinates.
        """
        count = targets.shape[1]
        max_points = self.max_points if max_points is None else max_points
        if max_points is None or count <= max_points:
            return coords, targets
        if generator is None:
            generator = noise.generator() if self.training else torch.Generator(device=targets.device).manual_seed(0)
        keys = torch.rand(targets.shape[0], count, generator=generator, device=targets.device)
        index = keys.argsort(dim=1)[:, :max_points].unsqueeze(-1)
        if coords.dim() == 2:
            coords = coords.expand(targets.shape[0], *coords.shape)
        return (coords.gather(1, index.expand(-1, -1, coords.shape[-1])),
                targets.gather(1, index.expand(-1, -1, targets.shape[-1])))

    # ---------------------------------------------------------------- inner loop
    def step_sizes(self) -> torch.Tensor:
        """The Meta-SGD step sizes as used: clipped to ``lr_clip``."""
        return self.inner_lr.clamp(*self.lr_clip)

    def _loss_grad(self, pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``∂(Σ_items item_loss)/∂pred``, written out."""
        return self.loss.point_loss_grad(pred, targets, 1.0 / pred[0].numel())

    def _inner_grad(self, state: torch.Tensor, coords: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Every item's gradient of its inner-loop loss w.r.t. its own state, ``(B, state_dim)``.

        Computed by the explicit backward passes of the SIREN and the conditioning, so it is
        plain forward code: differentiable by one ordinary backward pass (second order),
        and free of any autograd graph under ``torch.no_grad()``.  With an observation operator
        the gradient comes from autograd instead (:meth:`_observed_inner_grad`).
        """
        if self.observation is not None:
            return self._observed_inner_grad(state, coords, targets)
        mods, pullback = self.conditioning.modulations_vjp(state, stochastic=self.training)
        pred, trace = self.siren.forward_trace(coords, mods)
        grad = pullback(self.siren.modulation_grads(trace, self._loss_grad(pred, targets)))
        penalty = self.conditioning.inner_penalty_grad(state)
        return grad if penalty is None else grad + penalty

    def _observed_inner_grad(self, state: torch.Tensor, coords: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """:meth:`_inner_grad` through the observation operator, by autograd.

        Differentiable (``create_graph``) exactly when called with gradients enabled, i.e. in
        the second-order meta-step; otherwise a constant, as the fast path is.
        """
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not state.requires_grad:
                state = state.detach().requires_grad_()
            loss = self.item_loss(self.predict(coords, state, stochastic=self.training), targets).sum()
            (grad,) = torch.autograd.grad(loss, state, create_graph=create_graph)
        penalty = self.conditioning.inner_penalty_grad(state)
        return grad if penalty is None else grad + penalty

    def _step(self, state: torch.Tensor, coords: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.conditioning.project(state - self.step_sizes() * self._inner_grad(state, coords, targets))

    def adapt(
        self,
        coords: torch.Tensor,
        targets: torch.Tensor,
        steps: int | None = None,
        second_order: bool = True,
        checkpointing: bool = False,
    ) -> torch.Tensor:
        """Fit the latents of a batch of items with ``steps`` Meta-SGD steps from φ0.

        Under ``torch.no_grad()`` (encoding, validation) no meta-gradient graph is kept;
        otherwise the result is differentiable w.r.t. θ, φ0 and the step sizes.  φ0 and
        every step are followed by :meth:`Conditioning.project` (MSCN: each item's budget of
        non-zero entries; the identity for the other schemes).

        Args:
            coords: ``(N, in_dim)`` shared coordinates (or ``(B, N, in_dim)``).
            targets: ``(B, N, out_dim)`` features.
            steps: defaults to the meta-trained number of inner steps.
            second_order: differentiate through the inner gradients (MAML); ``False`` treats
                them as constants (first-order MAML: φ0 and the step sizes still learn).
            checkpointing: recompute each second-order inner step in the backward pass
                instead of storing its activations (less memory, one more forward in time).

        Returns:
            ``(B, state_dim)`` adapted inner-loop states; :meth:`Conditioning.code` turns
            them into the latents φ that are stored.
        """
        steps = self.inner_steps if steps is None else steps
        coords, targets = self.subsample(coords, targets)
        chunks = self._chunks(coords, targets.shape[0])
        if chunks is not None:
            return torch.cat([self.adapt(c, targets[i], steps) for i, c in chunks])
        meta_grad = torch.is_grad_enabled()
        state = self.state0.expand(targets.shape[0], -1)
        if not meta_grad:
            state = state.detach()
        state = self.conditioning.project(state)
        for _ in range(steps):
            if meta_grad and second_order and checkpointing:
                state = checkpoint(self._step, state, coords, targets, use_reentrant=False)
            elif meta_grad and second_order:
                state = self._step(state, coords, targets)
            else:  # first order, or no meta-gradient at all: the inner gradient is a constant
                with torch.no_grad():
                    grad = self._inner_grad(state.detach(), coords, targets)
                state = self.conditioning.project(state - self.step_sizes() * grad)
        return state

    def meta_loss(self, coords: torch.Tensor, targets: torch.Tensor, second_order: bool = True,
                  checkpointing: bool = False) -> torch.Tensor:
        """The outer loss of one meta-training step: the batch's mean loss after adaptation.

        MSCN's gates are sampled (``stochastic``) as in training; call ``.backward()`` on the
        result for the meta-gradient.  This is the function ``torch.compile`` compiles when
        training with ``VCINR_COMPILE=1``.
        """
        coords, targets = self.subsample(coords, targets)
        state = self.adapt(coords, targets, second_order=second_order, checkpointing=checkpointing)
        return self.item_loss(self.predict(coords, state, stochastic=True), targets).mean()
