"""Reconstruction losses: how items are fitted in the inner loop and how their quality is scored.

Each loss is one object that knows everything that depends on it — the loss and its gradient,
what the network's raw output means (features, or occupancy logits), the network's initial
output bias, how errors are counted and what quality figure they give (PSNR in dB or
accuracy) — so no other module asks which loss it has.

A loss *is* its name (a ``str`` subclass): model files, item specs and modality plug-ins
store ``"mse"`` / ``"bce"``, and :func:`get_loss` turns a stored name into the object.  A new
loss is a subclass registered with :func:`register_loss`.
"""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod

import torch
from torch.nn import functional as F


def psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of features in [0, 1] (the paper's −10·log10(MSE))."""
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


class Loss(str, metaclass=ABCMeta):
    """A reconstruction loss (abstract); the instance is the loss's name.

    Attributes:
        metric: the quality figure it is scored by (``"psnr"`` or ``"accuracy"``), a key of
            metrics and reports.
        output_bias: the SIREN's initial output bias, so an untrained network starts in the
            middle of the feature range.
        has_snr: whether a signal-to-noise ratio of its errors means anything.
    """

    metric: str
    output_bias: float
    has_snr: bool = False

    @abstractmethod
    def point_loss(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of every point and channel of raw network output ``out``, ``out``'s shape."""

    @abstractmethod
    def point_loss_grad(self, out: torch.Tensor, targets: torch.Tensor, scale: float) -> torch.Tensor:
        """``∂(scale · Σ point_loss)/∂out``, written out (the inner loop's hand-written gradient)."""

    def features(self, out: torch.Tensor) -> torch.Tensor:
        """Raw network output → features as a decoder writes them."""
        return out

    @abstractmethod
    def output_errors(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-point, per-channel error of raw network output (what quality figures count)."""

    @abstractmethod
    def feature_errors(self, decoded: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        """Per-point, per-channel error of decoded features against the original's."""

    def quality(self, mean_error: torch.Tensor) -> torch.Tensor:
        """Quality figure (:attr:`metric`) of a mean error, finite for averaging."""

    def exact_quality(self, mean_error: float) -> float:
        """Quality figure of one mean error as reported to a user (a lossless PSNR is ``inf``)."""
        return float(self.quality(torch.tensor(mean_error, dtype=torch.float64)))

    def training_quality(self, loss: torch.Tensor) -> torch.Tensor | None:
        """Quality implied by a mean training loss, where it implies one."""
        return None


class SquaredError(Loss):
    """Mean squared error of real-valued features in [0, 1], scored by PSNR."""

    metric, output_bias, has_snr = "psnr", 0.5, True

    def point_loss(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (out - targets).square()

    def point_loss_grad(self, out: torch.Tensor, targets: torch.Tensor, scale: float) -> torch.Tensor:
        return (out - targets) * (2.0 * scale)

    def output_errors(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (out.clamp(0, 1) - targets).square()

    def feature_errors(self, decoded: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        return (original - decoded).square()

    def quality(self, mean_error: torch.Tensor) -> torch.Tensor:
        return psnr_from_mse(mean_error)

    def exact_quality(self, mean_error: float) -> float:
        return math.inf if mean_error == 0 else -10.0 * math.log10(mean_error)

    def training_quality(self, loss: torch.Tensor) -> torch.Tensor | None:
        return psnr_from_mse(loss)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy of occupancy logits (voxels), scored by the accuracy of the ½ threshold."""

    metric, output_bias = "accuracy", 0.0  # logits start at p = ½

    def point_loss(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(out, targets, reduction="none")

    def point_loss_grad(self, out: torch.Tensor, targets: torch.Tensor, scale: float) -> torch.Tensor:
        return (torch.sigmoid(out) - targets) * scale

    def features(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)

    def output_errors(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return ((out > 0).to(targets.dtype) != targets).to(targets.dtype)

    def feature_errors(self, decoded: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
        return ((original >= 0.5) != (decoded >= 0.5)).to(decoded.dtype)

    def quality(self, mean_error: torch.Tensor) -> torch.Tensor:
        return 1.0 - mean_error


LOSSES: dict[str, Loss] = {}


def register_loss(loss: Loss) -> Loss:
    """Make ``loss`` available under its name (to configs, model files and :func:`get_loss`)."""
    LOSSES[str(loss)] = loss
    return loss


MSE = register_loss(SquaredError("mse"))
BCE = register_loss(BinaryCrossEntropy("bce"))


def get_loss(name: str) -> Loss:
    """The registered loss called ``name`` (a :class:`Loss` is returned as it is)."""
    if isinstance(name, Loss):
        return name
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {name!r}")
    return LOSSES[name]
