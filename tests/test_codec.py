"""Latent codecs: range coding, uniform quantiser, transform coder, quality levels, fit-codec."""

import json
import math
import shutil

import pytest
import torch

from vcinr.codec import entropy
from vcinr.codec.codecs import LearnedCodec, ResidualMLP, UniformCodec, latent_stats
from vcinr.codec.levels import find_level, list_levels, load_level
from vcinr.errors import ConfigError, ModelError
from vcinr.meta.model import load_model


def gaussian_latents(n=512, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g) * torch.linspace(0.1, 3.0, dim) + torch.arange(dim)


# --- entropy coding ---------------------------------------------------------------------------


def test_range_coder_round_trip_is_exact_including_escaped_values():
    counts = torch.tensor([[50.0, 30.0, 10.0, 0.0], [1.0, 1.0, 1.0, 100.0]])
    tables = entropy.tables_from_counts(counts)
    g = torch.Generator().manual_seed(1)
    symbols = torch.randint(0, 4, (200, 2), generator=g, dtype=torch.int32)
    symbols[5, 0], symbols[7, 1], symbols[9, 0] = -37, 1000, 4  # outside the tables: bypass-coded
    data = entropy.encode(symbols, tables)
    assert torch.equal(entropy.decode(data, 200, tables), symbols)
    # the estimate (escapes included) agrees with the coder up to its final flush
    assert abs(8 * len(data) - tables.ideal_bits(symbols)) <= 64 + 0.01 * tables.ideal_bits(symbols)


def test_histogram_tables_follow_the_counts():
    tables = entropy.tables_from_counts(torch.tensor([[900.0, 90.0, 9.0, 1.0]]))
    freq = tables.frequencies()[0]
    assert freq.sum() == 2**16 and (freq[:3] > 0).all()
    assert freq[0] > freq[1] > freq[2] > freq[3] >= 1  # last one is the escape
    frequent = tables.ideal_bits(torch.zeros(100, 1, dtype=torch.int32))
    rare = tables.ideal_bits(torch.full((100, 1), 2, dtype=torch.int32))
    assert frequent < 20 < 500 < rare
    assert tables.min_bits_per_row() == pytest.approx(-math.log2(int(freq.max()) / 2**16))


# --- uniform quantiser ------------------------------------------------------------------------


def test_uniform_symbols_in_range_and_error_shrinks_with_bits():
    latents = gaussian_latents()
    errors = []
    for bits in (2, 3, 4, 6, 8):
        codec = UniformCodec.fit(latents, bits, clip=3.0)
        symbols = codec.to_symbols(latents * 1.5)  # some outliers beyond ±3 std get clipped
        assert symbols.dtype == torch.int32 and symbols.min() >= 0 and symbols.max() <= 2**bits - 1
        assert symbols.max() == 2**bits - 1 and symbols.min() == 0
        errors.append((codec.from_symbols(codec.to_symbols(latents)) - latents).square().mean().item())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    # within the clip range the error is at most half a bin
    codec = UniformCodec.fit(latents, 8)
    normalised = codec.normalise(latents)
    inside = normalised.abs() < 3
    recon = codec.normalise(codec.from_symbols(codec.to_symbols(latents)))
    assert ((recon - normalised).abs()[inside] <= codec.step / 2 + 1e-5).all()


def test_uniform_entropy_coding_round_trip_and_rate():
    latents = gaussian_latents(n=300)
    codec = UniformCodec.fit(latents, 5)
    symbols = codec.to_symbols(latents)
    data = entropy.encode(symbols, codec.tables)
    assert torch.equal(entropy.decode(data, symbols.shape[0], codec.tables), symbols)
    estimated = codec.estimated_bits(symbols)
    assert estimated < 5 * symbols.numel()  # the histogram model beats fixed-length codes
    assert abs(8 * len(data) - estimated) <= 64 + 0.01 * estimated


def test_latent_stats_guard_constant_dimensions():
    latents = torch.cat([gaussian_latents(dim=2), torch.full((512, 1), 4.0)], 1)
    mean, std = latent_stats(latents)
    assert std[2] == 1.0 and mean[2] == 4.0
    codec = UniformCodec.fit(latents, 4)
    assert torch.isfinite(codec.from_symbols(codec.to_symbols(latents))).all()


# --- transform coder --------------------------------------------------------------------------


def test_transform_coder_shapes_and_noise_vs_rounding():
    from vcinr.codec.transform import TransformCoder

    torch.manual_seed(0)
    latents = gaussian_latents(n=32, dim=6)
    mean, std = latent_stats(latents)
    coder = TransformCoder(mean, std, width=24, blocks=1, z_dim=5)
    phi_noise, lik_noise = coder(latents, "noise")
    phi_round, lik_round = coder(latents, "round")
    assert phi_noise.shape == phi_round.shape == (32, 6) and lik_noise.shape == lik_round.shape == (32, 5)
    assert (lik_round > 0).all() and (lik_round <= 1).all()
    # rounding is deterministic, noise is not
    assert torch.equal(coder(latents, "round")[0], phi_round)
    assert not torch.equal(coder(latents, "noise")[0], phi_noise)
    # rounded codes sit on the integer grid around the medians; noisy ones within ±½ of z
    z = coder.code(latents)
    medians = coder.entropy_bottleneck.quantiles[:, 0, 1]
    z_hat, _ = coder.entropy_bottleneck(z, training=False)
    offsets = z_hat - medians
    assert torch.allclose(offsets, offsets.round(), atol=1e-5)
    z_noise, _ = coder.entropy_bottleneck(z, training=True)
    assert ((z_noise - z).abs() <= 0.5 + 1e-6).all() and not torch.allclose(z_noise, z_noise.round())
    with pytest.raises(ValueError):
        coder(latents, "bogus")


def test_trained_transform_coder_estimate_matches_the_coded_size(tiny_cifar_model):
    from vcinr.codec.fit import _load_training_items, train_transform_coder, FitSettings

    loaded = load_model(tiny_cifar_model)
    _, coords, features = _load_training_items(loaded, None, 48)
    latents = loaded.model.encode(coords, features)
    settings = FitSettings(lambdas=(0.01,), steps=30, lr=3e-3, batch_size=16)
    coder, start = train_transform_coder(loaded.model, coords, latents, features, 0.01, settings, progress=False)
    assert start == 0
    codec = coder.to_codec()
    assert isinstance(codec, LearnedCodec) and codec.symbol_dim == latents.shape[1]
    symbols = codec.to_symbols(latents)
    data = entropy.encode(symbols, codec.tables)
    assert torch.equal(entropy.decode(data, symbols.shape[0], codec.tables), symbols)
    # the entropy bottleneck's own (continuous) estimate, its quantised tables and the coder agree
    with torch.no_grad():
        _, likelihoods = coder(latents, "round")
    continuous = float(-torch.log2(likelihoods).sum())
    tabled = codec.estimated_bits(symbols)
    assert abs(tabled - continuous) <= 0.02 * continuous + 8
    assert abs(8 * len(data) - tabled) <= 64 + 0.01 * tabled
    # the inference codec reproduces the training module's rounded reconstruction, up to its
    # transforms' float16 storage (exactly, once the training module is rounded the same way)
    with torch.no_grad():
        phi_round, _ = coder(latents, "round")
        assert torch.allclose(codec.from_symbols(symbols), phi_round, rtol=1e-2, atol=1e-2)
        for weight in (*coder.g_a.parameters(), *coder.g_s.parameters()):
            weight.copy_(weight.half().float())
        phi_round, _ = coder(latents, "round")
    assert torch.allclose(codec.from_symbols(symbols), phi_round, atol=1e-5)


def _small_learned_codec(weight_dtype):
    torch.manual_seed(0)
    tables = entropy.tables_from_counts(torch.ones(3, 8))
    return LearnedCodec(ResidualMLP(4, 3, 16, 1), ResidualMLP(3, 4, 16, 1), torch.zeros(3), tables,
                        torch.zeros(4), torch.ones(4), weight_dtype=weight_dtype)


def test_learned_codec_stores_its_transforms_in_half_precision_and_loads_the_same_codec():
    codec = _small_learned_codec(torch.float16)
    stored = codec.tensors()
    assert all(v.dtype == torch.float16 for k, v in stored.items() if k.startswith(("g_a.", "g_s.")))
    loaded = LearnedCodec.from_tensors(stored, {"width": 16, "blocks": 1, "z_dim": 3})
    assert loaded.weight_dtype == torch.float16 and loaded.g_s.inp.weight.dtype == torch.float32
    symbols = torch.randint(-3, 4, (10, 3), dtype=torch.int32)
    phi = torch.randn(10, 4)
    assert torch.equal(loaded.from_symbols(symbols), codec.from_symbols(symbols))
    assert torch.equal(loaded.to_symbols(phi), codec.to_symbols(phi))


def test_learned_levels_stored_in_float32_load_unrounded():
    """Levels fitted before transforms were stored in half keep decoding what they encoded."""
    codec = _small_learned_codec(torch.float32)
    stored = codec.tensors()
    assert stored["g_s.inp.weight"].dtype == torch.float32
    assert not torch.equal(stored["g_s.inp.weight"], stored["g_s.inp.weight"].half().float())
    loaded = LearnedCodec.from_tensors(stored, {"width": 16, "blocks": 1, "z_dim": 3})
    assert loaded.weight_dtype == torch.float32 and torch.equal(loaded.g_s.inp.weight, stored["g_s.inp.weight"])
    stored["g_a.inp.weight"] = stored["g_a.inp.weight"].half()
    with pytest.raises(ValueError, match="must all be float16 or all float32"):
        LearnedCodec.from_tensors(stored, {"width": 16, "blocks": 1, "z_dim": 3})


def test_residual_mlp_is_residual():
    net = ResidualMLP(4, 3, 8, blocks=2)
    assert len(net.blocks) == 2 and net(torch.zeros(5, 4)).shape == (5, 3)
    assert any(isinstance(m, torch.nn.SELU) for m in net.modules())


# --- fitted quality levels --------------------------------------------------------------------


def test_levels_are_named_and_rate_decreases_with_lambda(tiny_cifar_codecs):
    loaded = load_model(tiny_cifar_codecs)
    levels = list_levels(loaded)
    assert [lv.name for lv in levels] == ["1", "2", "3", "u3", "u6", "u8"]
    lambdas = [lv.record["lambda"] for lv in levels if lv.kind == "learned"]
    assert lambdas == sorted(lambdas)
    rates = [lv.record["metrics"]["bpp"] for lv in levels if lv.kind == "learned"]
    assert rates[0] < rates[1] < rates[2], rates
    uniform_rates = [lv.record["metrics"]["bpp"] for lv in levels if lv.kind == "uniform"]
    assert uniform_rates[0] < uniform_rates[1] < uniform_rates[2], uniform_rates
    assert find_level(loaded, None).name == "3"  # default: the highest learned level
    assert find_level(loaded, "u6").stem == "uniform-6bit"
    assert find_level(loaded, "learned-lambda0.001").name == "2"
    with pytest.raises(ConfigError, match="available: 1 .*u8"):
        find_level(loaded, "7")


def test_learned_level_measured_on_real_items(tiny_cifar_codecs):
    """Re-measure a stored level: its codec gives the rate and quality fit-codec recorded."""
    from vcinr.codec.fit import FitSettings, _held_out, _load_training_items, evaluate_codec

    loaded = load_model(tiny_cifar_codecs)
    level = load_level(loaded, "2")
    cfg, coords, _ = _load_training_items(loaded, None, 64)
    held_out = _held_out(loaded, cfg, FitSettings(eval_items=64), progress=False)
    assert held_out.split == "test" and level.record["evaluated_on"] == {
        "split": "test", "signals": 64, "quality": "whole-signal PSNR before the container and the writer's rounding"}
    metrics = evaluate_codec(loaded.model, level.codec, held_out)
    assert metrics["bpp"] == pytest.approx(level.record["metrics"]["bpp"], rel=1e-6)
    assert metrics["psnr"] == pytest.approx(level.record["metrics"]["psnr"], abs=1e-4)
    assert torch.equal(level.coords, coords)


def test_tampered_or_foreign_codec_files_are_refused(tiny_cifar_codecs, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_cifar_codecs, model_dir)
    loaded = load_model(model_dir)
    level = find_level(loaded, "u6")
    with open(level.weights, "r+b") as f:  # flip a byte of the weights
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(ModelError, match="fingerprint"):
        load_level(loaded, "u6")
    # a level fitted for another model is not listed at all
    info_path = model_dir / "codecs" / "uniform-8bit.json"
    info = json.loads(info_path.read_text())
    info["model_fingerprint"] = "0" * 64
    info_path.write_text(json.dumps(info))
    assert "u8" not in [lv.name for lv in list_levels(loaded)]


def test_model_without_codecs_says_how_to_fit_them(tiny_cifar_model):
    with pytest.raises(ModelError, match="fit-codec"):
        find_level(load_model(tiny_cifar_model), None)


def test_fit_codec_skips_finished_levels_and_resumes_interrupted_ones(tiny_cifar_model, tmp_path, monkeypatch):
    from vcinr.codec import fit

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_cifar_model, model_dir)
    settings = fit.FitSettings(lambdas=(0.01,), bits=(4,), steps=20, lr=3e-3, batch_size=8, max_items=32,
                               eval_items=16, checkpoint_every=10)
    # an uninterrupted reference run
    reference_dir = tmp_path / "reference"
    shutil.copytree(tiny_cifar_model, reference_dir)
    fit.fit_codecs(reference_dir, settings=settings, progress=False)

    # interrupt the learned level right after its first checkpoint (step 10)
    save = fit._Checkpoint.save

    def save_then_interrupt(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(fit._Checkpoint, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        fit.fit_codecs(model_dir, settings=settings, progress=False)
    monkeypatch.setattr(fit._Checkpoint, "save", save)
    assert (model_dir / "codecs" / ".ckpt-learned-lambda0.01.safetensors").is_file()
    assert not (model_dir / "codecs" / "learned-lambda0.01.json").exists()

    result = fit.fit_codecs(model_dir, settings=settings, progress=False)
    status = {lv.stem: lv.status for lv in result.levels}
    assert status == {"uniform-4bit": "skipped", "learned-lambda0.01": "resumed"}
    assert not (model_dir / "codecs" / ".ckpt-learned-lambda0.01.safetensors").exists()
    # resuming reproduces the uninterrupted run exactly
    resumed = (model_dir / "codecs" / "learned-lambda0.01.safetensors").read_bytes()
    assert resumed == (reference_dir / "codecs" / "learned-lambda0.01.safetensors").read_bytes()

    again = fit.fit_codecs(model_dir, settings=settings, progress=False)
    assert {lv.status for lv in again.levels} == {"skipped"}
    changed = fit.FitSettings(**{**settings.__dict__, "steps": 21})
    refit = fit.fit_codecs(model_dir, settings=changed, progress=False)
    assert {lv.stem: lv.status for lv in refit.levels} == {"uniform-4bit": "skipped", "learned-lambda0.01": "fitted"}


def test_fit_settings_are_validated():
    from vcinr.codec.fit import FitSettings

    for bad in ({"lambdas": (-1.0,)}, {"bits": (0,)}, {"bits": (13,)}, {"steps": 0}, {"lambdas": (), "bits": ()}):
        with pytest.raises(ConfigError):
            FitSettings(**bad).validate()


def test_cli_fit_codec_reports_levels_and_skips_them_on_rerun(tiny_cifar_model, tmp_path, vcinr_main, capsys):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_cifar_model, model_dir)
    argv = ["fit-codec", "--model", str(model_dir), "--lambdas", "0.01", "0.001", "--bits", "5", "--steps", "4",
            "--lr", "1e-2", "--batch-size", "8", "--max-items", "32", "--quiet"]
    assert vcinr_main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[1] for line in lines[:3]] == ["1", "2", "u5"]
    assert "learned-lambda0.001" in lines[0] and "fitted" in lines[0] and "PSNR" in lines[0]
    assert "3 quality levels (3 fitted, 0 unchanged)" in lines[3]
    assert vcinr_main(argv) == 0
    assert "(0 fitted, 3 unchanged)" in capsys.readouterr().out
    assert vcinr_main(["fit-codec", "--model", str(model_dir), "--bits", "--lambdas", "-1", "--quiet"]) == 2
    assert "lambdas must be positive" in capsys.readouterr().err
    assert vcinr_main(["fit-codec", "--model", str(model_dir), "--data", str(tmp_path / "nowhere"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err
