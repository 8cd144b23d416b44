"""fit-codec's default schedule: the linearised warm-up is a faithful stand-in, and learned levels beat uniform ones.

Issue 16 asked for defaults that finish in minutes and still give learned levels above the
uniform ones at matched rate on held-out items; the timing lives in docs/codec.md (a benchmark
figure), the ordering is checked here on a tiny model.
"""

import shutil

import torch

from vcinr.codec.codecs import latent_stats
from vcinr.codec.fit import FitSettings, distortion_gain, fit_codecs
from vcinr.codec.levels import list_levels
from vcinr.meta.model import load_model


SATURATED_DB = 0.05  # the top of the uniform curve that counts as the model's ceiling


def _psnr_at(curve: list[tuple[float, float]], bpp: float) -> float | None:
    """The uniform curve's PSNR at ``bpp`` by linear interpolation (None outside its range)."""
    curve = sorted(curve)
    for (r0, q0), (r1, q1) in zip(curve, curve[1:]):
        if r0 <= bpp <= r1:
            return q0 + (q1 - q0) * (bpp - r0) / (r1 - r0)
    return None


def test_linearised_distortion_predicts_how_far_the_output_moves(tiny_cifar_model, data_dir):
    from vcinr.data import load_items
    from vcinr.meta.training import flat_items

    loaded = load_model(tiny_cifar_model)
    model = loaded.model.eval()
    coords, features = flat_items(load_items(loaded.config.data, "train"))
    latents = model.encode(coords, features)
    _, std = latent_stats(latents)
    gain = distortion_gain(model, coords, latents, std)
    # other items, another random error, half the size: the output's MSE is still gain * mean(e^2)
    g = torch.Generator().manual_seed(7)
    error = torch.randn(latents.shape, generator=g) * 0.05
    with torch.no_grad():
        moved = (model.decode(coords, latents + error * std) - model.decode(coords, latents)).square().flatten(1).mean(1)
    ratio = float(moved.mean() / (gain * error.square().mean(1)).mean())
    assert gain > 0
    assert 0.7 < ratio < 1.4, ratio


def test_default_schedule_puts_learned_levels_above_the_uniform_curve(tiny_cifar_model, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(tiny_cifar_model, out)
    settings = FitSettings(lambdas=(1e-4, 1e-3), bits=(1, 2, 3, 4, 5, 6), max_items=64, eval_items=64)
    result = fit_codecs(out, settings=settings, progress=False)
    uniform = [(r.metrics["bpp"], r.metrics["psnr"]) for r in result.levels if r.kind == "uniform"]
    learned = [(r.metrics["bpp"], r.metrics["psnr"]) for r in result.levels if r.kind == "learned"]
    # The tiny model's uniform curve flattens at its own ceiling (about 14.27 dB, from ~0.012 bpp):
    # there a learned level can only match it to within float noise (on an AMD EPYC one came out
    # 0.04 dB below), so the strict comparison is made where the uniform curve still rises, or
    # below its lowest rate, where a learned level must beat its lowest point at a lower rate.
    ceiling = max(q for _, q in uniform)
    lowest_bpp, lowest_psnr = min(uniform)
    compared = 0
    for bpp, psnr in learned:
        reference = _psnr_at(uniform, bpp)
        if reference is None and bpp < lowest_bpp:
            compared += 1
            assert psnr > lowest_psnr, (bpp, psnr, uniform)
        elif reference is not None and reference < ceiling - SATURATED_DB:
            compared += 1
            assert psnr > reference, (bpp, psnr, reference, uniform)
        elif reference is not None:
            assert psnr > reference - SATURATED_DB, (bpp, psnr, reference, uniform)
    assert compared >= 1, (learned, uniform)  # at least one learned level where the comparison is strict
    assert len(list_levels(load_model(out))) == 8
