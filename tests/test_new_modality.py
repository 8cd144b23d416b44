"""Issue 15, point 1: a new modality is one class and one line of registration.

The modality below — a time series in a one-column CSV file — is defined here and nowhere
in vcinr.  Registered, it is trained on, compressed, decompressed and evaluated through the
public API like any bundled modality, with no other change to the package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vcinr.modalities as registry
from vcinr.modalities import register_modality
from vcinr.modalities.base import Modality
from vcinr.modalities.common import reading, writing
from vcinr.signal import Signal, grid_coordinates


class SeriesModality(Modality):
    """A sampled time series, one value per line, of values in [LOW, HIGH] (features: scaled into [0, 1])."""

    name = "series"
    suffixes = write_suffixes = (".csv",)
    coord_range = (-1.0, 1.0)
    in_dim = 1
    LOW, HIGH = -25.0, 35.0

    def read(self, path: Path) -> Signal:
        with reading(path, "series"):
            values = np.loadtxt(path, ndmin=1, dtype=np.float64)
        features = np.clip((values - self.LOW) / (self.HIGH - self.LOW), 0.0, 1.0).astype(np.float32)
        return Signal(torch.from_numpy(features)[:, None], grid_coordinates(values.shape, *self.coord_range),
                      self.name, {})

    def write(self, signal: Signal, path: Path) -> None:
        values = signal.features[:, 0].double().numpy() * (self.HIGH - self.LOW) + self.LOW
        with writing(path) as tmp:
            np.savetxt(tmp, values, fmt="%.9g")


@pytest.fixture
def series(tmp_path):
    """The modality registered for one test, and a folder of eight series of 96 samples."""
    saved = dict(registry.MODALITIES), dict(registry._BY_SUFFIX)
    register_modality(SeriesModality())  # all a new modality needs
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 1.0, 96)
    for i in range(8):
        np.savetxt(folder / f"s{i}.csv", np.sin(2 * np.pi * rng.uniform(1, 3) * t + rng.uniform(0, 6)) * 20.0 + 5.0)
    yield folder
    for table, before in zip((registry.MODALITIES, registry._BY_SUFFIX), saved):  # the registry is process-wide
        table.clear()
        table.update(before)


def test_a_modality_defined_here_trains_compresses_decompresses_and_evaluates(series, tiny_config, tmp_path):
    from vcinr.codec.fit import FitSettings, fit_codecs
    from vcinr.evaluate.harness import run_eval
    from vcinr.training import train
    from vcinr.pipeline import compress_file, decompress_file

    model = tmp_path / "model"
    config = tiny_config("series", series, patch=[32], steps=60, max_items=None, batch_size=8)
    result = train(config, model, progress=False)
    assert result.final["psnr"] > result.initial["psnr"]
    fit_codecs(model, settings=FitSettings(lambdas=(1e-3,), bits=(6,), steps=50, lr=1e-2, batch_size=8,
                                           eval_items=16, checkpoint_every=50), progress=False)

    source = series / "s7.csv"  # a test-split file
    report = compress_file(source, model, "u6", tmp_path / "s7.vci")
    assert report.modality == "series" and report.kbps is None and report.patches == 3
    back = decompress_file(tmp_path / "s7.vci", model, tmp_path / "s7-decoded.csv")
    decoded, original = np.loadtxt(back.output), np.loadtxt(source)
    assert decoded.shape == original.shape
    mse = np.mean(np.square((decoded - original) / (SeriesModality.HIGH - SeriesModality.LOW)))
    assert -10 * np.log10(mse) == pytest.approx(report.value, abs=0.05)  # compress's PSNR is decompress's

    outcome = run_eval(model, [series], tmp_path / "eval", max_files=2, progress=False)
    assert {p.codec for p in outcome.points} == {"vcinr-learned", "vcinr-uniform"}  # no standard codecs of its own
    assert outcome.json_path.is_file() and outcome.plot_path.is_file()
