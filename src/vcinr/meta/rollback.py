"""Roll a meta-training run back when its loss jumps (``train.spike_factor``).

Second-order meta-learning can leave a good basin in one step and never come back while
every number stays finite: the third speech stage's training loss (a 20-step median)
jumped tenfold at step 1,244, from 6e-5 to 7e-4, and its whole-file validation fell from
41.4 to 35.0 dB by step 1,500 and never recovered (docs/training.md, "A third stage
diverged").  Skipping non-finite steps cannot catch that; this guard does.

It keeps the run's state (weights, optimiser, weight average and batch sampler) in memory
every ``interval`` steps, the last two copies.  When the median training loss of the last
``recent`` steps exceeds ``factor`` times the median of the ``reference`` steps before them,
it hands back the older copy, taken 1–2 intervals before the jump, and the loop resumes from
there at half its learning rate.  A jump of the loss medians, not of one step's loss: single
batches of hard items are routinely ten times the median.
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vcinr.meta.averaging import WeightAverage
from vcinr.meta.metasgd import MetaINR


@dataclass(frozen=True)
class Snapshot:
    """A run's state after ``step`` outer steps, copied in memory."""

    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    sampler: torch.Tensor
    average: dict[str, torch.Tensor] | None

    def restore(self, model: MetaINR, optimizer: torch.optim.Optimizer, sampler: torch.Generator,
                average: WeightAverage | None) -> None:
        model.load_state_dict(self.model)
        optimizer.load_state_dict(copy.deepcopy(self.optimizer))  # a copy: a second jump may restore it again
        sampler.set_state(self.sampler.clone())
        if average is not None and self.average is not None:
            average.load_state_tensors(self.average)


class SpikeGuard:
    """Detects a jump of the training loss and keeps the snapshots to roll back to.

    ``observe`` every step's loss; ``spiked()`` says whether the recent median has jumped;
    ``keep`` the run's state at every step (it copies only every ``interval``); ``rollback``
    returns the snapshot to restore and forgets the losses after it; ``resume`` arms a
    resumed run at once.
    """

    def __init__(self, factor: float, interval: int = 100, recent: int = 20, reference: int = 200):
        if not factor > 1:
            raise ValueError(f"spike factor must be > 1, got {factor}")
        self.factor, self.interval, self.recent, self.reference = factor, interval, recent, reference
        # two intervals more than the comparison needs, so that after a rollback the losses before
        # the snapshot still fill the reference window and a second jump is caught like the first
        self._losses: deque[tuple[int, float]] = deque(maxlen=recent + reference + 2 * interval)
        self._snapshots: deque[Snapshot] = deque(maxlen=2)

    def observe(self, step: int, loss: float) -> None:
        """Record the loss of the state after ``step`` outer steps."""
        self._losses.append((step, loss))

    def resume(self, step: int, losses: list[tuple[int, float]], model: MetaINR, optimizer: torch.optim.Optimizer,
               sampler: torch.Generator, average: WeightAverage | None) -> None:
        """Arm the guard of a resumed run: the ``(step, loss)`` its log holds, its state as the first copy.

        Without them the guard would watch nothing for ``recent + reference`` steps after every
        resume: a width-256 run resumed at step 265 collapsed from 20 to 11 dB over steps
        320–360 unseen (docs/training.md, "Stability").
        """
        for logged_step, loss in losses[-self._losses.maxlen:]:
            self.observe(logged_step, loss)
        self.keep(step, model, optimizer, sampler, average, always=True)

    def spiked(self) -> bool:
        """Whether the median of the last ``recent`` losses is ``factor`` × that of the ``reference`` before.

        Only once a copy of the state from before those ``recent`` steps is kept to roll back to.
        """
        if len(self._losses) < self.recent + self.reference:
            return False
        window = list(self._losses)[-(self.recent + self.reference):]
        if not self._snapshots or self._snapshots[0].step > window[self.reference][0]:
            return False
        losses = np.array([loss for _, loss in window])
        before, recent = np.median(losses[:self.reference]), np.median(losses[self.reference:])
        return bool(recent > self.factor * before)

    def keep(self, step: int, model: MetaINR, optimizer: torch.optim.Optimizer, sampler: torch.Generator,
             average: WeightAverage | None, always: bool = False) -> None:
        """Copy the run's state if ``step`` is a multiple of ``interval`` (or ``always``)."""
        if step % self.interval and not always:
            return
        self._snapshots.append(Snapshot(
            step, {k: v.detach().clone() for k, v in model.state_dict().items()},
            copy.deepcopy(optimizer.state_dict()), sampler.get_state().clone(),
            {k: v.detach().clone() for k, v in average.state_tensors().items()} if average is not None else None))

    def rollback(self) -> Snapshot:
        """The older snapshot, taken before the jump; losses and snapshots after it are forgotten."""
        target = self._snapshots[0]
        self._snapshots.clear()
        self._snapshots.append(target)
        kept = [(s, loss) for s, loss in self._losses if s < target.step]  # losses of states before it
        self._losses.clear()
        self._losses.extend(kept)
        return target
