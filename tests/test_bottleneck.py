"""The torch port of CompressAI's entropy bottleneck and CDF quantiser against CompressAI's own output.

``tests/data/compressai-bottleneck.safetensors`` was written by CompressAI 1.2.8 (a 4-channel
bottleneck after 40 training steps, its likelihoods, auxiliary loss and ``update()`` tables,
and the quantised CDFs of a few PMFs), before vcinr dropped the dependency.  Bit-identical
tables mean codecs fitted now code exactly as the ones fitted with CompressAI.
"""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vcinr.codec.bottleneck import EntropyBottleneck, LowerBound
from vcinr.codec.entropy import pmf_to_quantized_cdf
from vcinr.codec.transform import TransformCoder

FIXTURE = load_file(Path(__file__).parent / "data" / "compressai-bottleneck.safetensors")


def loaded_bottleneck() -> EntropyBottleneck:
    state = {k[6:]: v for k, v in FIXTURE.items() if k.startswith("state.")}
    bottleneck = EntropyBottleneck(4)
    bottleneck.load_state_dict(state)  # CompressAI's parameter and buffer names, strictly
    return bottleneck


def test_quantised_cdfs_match_compressai_bit_for_bit():
    for pmf, expected in zip(FIXTURE["pmfs"], FIXTURE["pmf_cdfs"]):
        cdf = pmf_to_quantized_cdf(pmf.tolist())
        assert cdf == expected.tolist()
        widths = torch.tensor(cdf).diff()
        assert cdf[0] == 0 and cdf[-1] == 2**16 and bool((widths >= 1).all())


def test_bottleneck_likelihoods_loss_and_tables_match_compressai():
    bottleneck = loaded_bottleneck()
    _, likelihoods = bottleneck(FIXTURE["x"], training=False)
    # a likelihood is a difference of two CDF values in [0, 1], each exact to about one float32 ulp
    # of 1.0 (1.2e-7), and the last ulp depends on the CPU's kernels (AVX-512 on an AMD EPYC
    # differed from the fixture's machine by 1.19e-7 in 1 of 512 values): 2.5e-7 absolute
    torch.testing.assert_close(likelihoods, FIXTURE["likelihoods"], rtol=1e-5, atol=2.5e-7)
    torch.testing.assert_close(bottleneck.loss().reshape(1), FIXTURE["aux_loss"], rtol=1e-5, atol=1e-4)
    bottleneck.update()
    torch.testing.assert_close(bottleneck.quantiles, FIXTURE["expected.quantiles"], rtol=1e-5, atol=1e-4)
    assert torch.equal(bottleneck._cdf_length, FIXTURE["expected.length"])
    assert torch.equal(bottleneck._offset, FIXTURE["expected.offset"])
    assert torch.equal(bottleneck._quantized_cdf, FIXTURE["expected.cdf"])


def test_noise_mode_adds_bounded_noise_and_round_mode_rounds_around_the_medians():
    bottleneck = loaded_bottleneck()
    x = FIXTURE["x"]
    noisy, _ = bottleneck(x, training=True)
    assert noisy.shape == x.shape and float((noisy - x).abs().max()) <= 0.5
    rounded, _ = bottleneck(x, training=False)
    offsets = rounded - bottleneck.medians
    torch.testing.assert_close(offsets, torch.round(offsets))


def test_likelihood_bound_passes_only_gradients_that_push_a_bounded_value_up():
    bound = LowerBound(1e-9)
    x = torch.tensor([1e-12, 1e-12, 0.5], requires_grad=True)
    y = bound(x)
    assert y.tolist() == pytest.approx([1e-9, 1e-9, 0.5])
    y.backward(torch.tensor([-1.0, 1.0, 1.0]))  # below the bound only the push upwards (-1) passes
    assert x.grad.tolist() == [-1.0, 0.0, 1.0]


def test_transform_coder_codec_uses_the_bottleneck_tables():
    torch.manual_seed(0)
    coder = TransformCoder(torch.zeros(6), torch.ones(6), width=16, blocks=1, z_dim=4)
    codec = coder.to_codec()
    eb = coder.entropy_bottleneck
    assert torch.equal(codec.tables.cdf, eb._quantized_cdf) and torch.equal(codec.medians, eb.medians)
