"""Quality of whole signals from the predictions of their items (patches).

A file cut into patches is one signal to its user: its PSNR is one MSE over every point of
the file, then dB.  The mean of per-patch PSNRs, which meta-learning papers often report, is
dominated by flat, easy patches (a patch of sky at 45 dB outweighs the error of a textured
patch at 20 dB) and overstates whole files by several dB; it is kept here only as a labelled
side figure (``psnr_patch_mean``).

:class:`SignalQuality` accumulates squared errors per signal as batches of items arrive, so
evaluation never needs a whole signal in memory, and several processes can add up their
totals (:meth:`totals` / :meth:`from_totals`).
"""

from __future__ import annotations

import torch

from vcinr.meta.losses import Loss, get_loss


class SignalQuality:
    """Per-signal error totals of items, for whole-signal PSNR (or voxel accuracy) and SNR.

    Args:
        num_signals: how many signals the items belong to.
        loss: the model's :class:`~vcinr.meta.losses.Loss` (or its name): what an error is
            and what quality it gives.
        snr_centre: the feature value of silence for signal-to-noise ratios (audio: 0.5, the
            zero of a waveform mapped to [0, 1]); ``None`` where SNR means nothing.
    """

    # per signal: squared error (or wrong voxels), squared signal about the centre, points;
    # and over items: the sum of per-item qualities and the number of items
    def __init__(self, num_signals: int, loss: Loss | str = "mse", snr_centre: float | None = None):
        self.loss, self.snr_centre = get_loss(loss), snr_centre
        self.error = torch.zeros(num_signals, dtype=torch.float64)
        self.energy = torch.zeros(num_signals, dtype=torch.float64)
        self.points = torch.zeros(num_signals, dtype=torch.float64)
        self.item_sum = torch.zeros(2, dtype=torch.float64)

    def add(self, pred: torch.Tensor, target: torch.Tensor, signals: torch.Tensor,
            mask: torch.Tensor | None = None) -> None:
        """Add items ``(B, N, C)``: raw network output ``pred`` (e.g. occupancy logits) and ``target``.

        ``signals`` ``(B,)`` names each item's signal; ``mask`` ``(B, N)`` marks the points that
        belong to it (``None``: all).
        """
        pred, target = pred.detach().double().cpu(), target.detach().double().cpu()
        per_point = self.loss.output_errors(pred, target)
        weight = torch.ones(per_point.shape[:2], dtype=torch.float64) if mask is None else mask.reshape(
            per_point.shape[:2]).double().cpu()
        channels = per_point.shape[-1]
        error = (per_point.sum(-1) * weight).sum(1)
        points = weight.sum(1) * channels
        signals = signals.cpu()
        self.error.index_add_(0, signals, error)
        self.points.index_add_(0, signals, points)
        if self.snr_centre is not None:
            self.energy.index_add_(0, signals, ((target - self.snr_centre).square().sum(-1) * weight).sum(1))
        per_item = error / points
        item_quality = self.loss.quality(per_item)
        self.item_sum += torch.stack([item_quality.sum(), torch.tensor(float(len(per_item)), dtype=torch.float64)])

    def totals(self) -> torch.Tensor:
        """Everything accumulated, as one tensor that processes can sum."""
        return torch.cat([self.error, self.energy, self.points, self.item_sum])

    def load_totals(self, totals: torch.Tensor) -> None:
        """Replace the accumulated totals by ``totals`` (e.g. summed over processes)."""
        n = self.error.shape[0]
        totals = totals.double().cpu()
        self.error, self.energy, self.points = totals[:n], totals[n : 2 * n], totals[2 * n : 3 * n]
        self.item_sum = totals[3 * n :]

    def result(self) -> dict[str, float]:
        """Mean over the signals seen of their whole-signal quality (plus labelled extras).

        ``psnr`` (dB) or ``accuracy`` is per whole signal, averaged over signals;
        ``psnr_patch_mean`` / ``accuracy_patch_mean`` is the mean over items, reported only
        where items are patches of larger signals; ``snr`` (dB) only with ``snr_centre``.
        """
        seen = self.points > 0
        error, points = self.error[seen], self.points[seen]
        if not bool(seen.any()):
            return {}
        key = self.loss.metric
        whole = self.loss.quality(error / points)
        out = {key: float(whole.mean())}
        items = float(self.item_sum[1])
        if items > int(seen.sum()):
            out[f"{key}_patch_mean"] = float(self.item_sum[0]) / items
        if self.snr_centre is not None and self.loss.has_snr:
            energy = self.energy[seen]
            snr = 10.0 * torch.log10(energy.clamp_min(1e-30) / error.clamp_min(1e-30))
            out["snr"] = float(snr.mean())
        return out
