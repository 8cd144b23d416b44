"""An exponential moving average of the meta-learned weights (``train.ema_decay``).

Second-order meta-learning at an outer learning rate that makes progress also wanders: the
Kodak recipe's whole-image validation fell up to 1 dB below its best between two evaluations
100 steps apart, then recovered.  The average of the weights over the last ``1 / (1 − decay)``
steps smooths those excursions out, so when it is on, validation, the final evaluation and
the written model all use the average, while the optimiser keeps stepping the raw weights.
Every parameter is averaged: θ, the conditioning network, φ0 and the Meta-SGD step sizes.
Built on :class:`torch.optim.swa_utils.AveragedModel`; its first update copies the weights,
so a warm start averages from the weights it starts with.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from vcinr.meta.metasgd import MetaINR

PREFIX = "ema."  # the average's tensors in a checkpoint, beside "model." and "opt."


class WeightAverage:
    """``average ← decay · average + (1 − decay) · weights`` after every optimiser step."""

    def __init__(self, model: MetaINR, decay: float):
        self._averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))

    @property
    def model(self) -> MetaINR:
        """The averaged network, a separate copy: evaluate and save this one."""
        return self._averaged.module

    def update(self, model: MetaINR) -> None:
        self._averaged.update_parameters(model)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {PREFIX + k: v for k, v in self._averaged.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore from a checkpoint's tensors (raises ``KeyError`` if it holds no average)."""
        keys = self._averaged.state_dict().keys()
        self._averaged.load_state_dict({k: tensors[PREFIX + k] for k in keys})
