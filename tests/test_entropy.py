"""The range coder against its tables: exact rates, escapes at the int32 limits, hostile words."""

import math

import numpy as np
import pytest
import torch

from vcinr.codec import entropy
from vcinr.errors import BitstreamError


def peaked_tables() -> entropy.EntropyTables:
    return entropy.tables_from_counts(torch.tensor([[5000.0, 100.0, 10.0, 1.0], [1.0, 1.0, 1.0, 1000.0]]))


def test_coder_spends_exactly_the_tables_rate_even_on_rare_symbols():
    """constriction's models must hold the stored 16-bit frequencies exactly (perfect=True, × 2**8).

    A rare symbol (frequency of a few units in 2**16) repeated 20,000 times magnifies any
    re-quantisation by the coder: 1 % off in its probability would cost ~290 bits.
    """
    tables = peaked_tables()
    for column in (1, 2, 3):
        symbols = torch.full((20_000, 2), column, dtype=torch.int32)
        ideal = tables.ideal_bits(symbols)
        coded = 8 * len(entropy.encode(symbols, tables))
        assert 0 <= coded - ideal <= 64, (column, coded, ideal)


def test_escaped_values_round_trip_to_the_int32_limits_and_cost_what_ideal_bits_says():
    tables = peaked_tables()
    extremes = [-(2**31), 2**31 - 1, -1, 4, 5, 2**16, -(2**16) - 7]
    symbols = torch.zeros(len(extremes) * 3, 2, dtype=torch.int32)
    symbols[: len(extremes), 0] = torch.tensor(extremes, dtype=torch.int32)
    symbols[len(extremes) : 2 * len(extremes), 1] = torch.tensor(extremes, dtype=torch.int32)
    data = entropy.encode(symbols, tables)
    assert torch.equal(entropy.decode(data, symbols.shape[0], tables), symbols)
    assert abs(8 * len(data) - tables.ideal_bits(symbols)) <= 64


def test_decoding_is_a_pure_function_of_the_stored_integers():
    """Two table objects from the same integers (as two processes would load them) decode alike."""
    a = peaked_tables()
    b = entropy.EntropyTables(a.cdf.clone(), a.length.clone(), a.offset.clone())
    g = torch.Generator().manual_seed(3)
    symbols = torch.randint(-3, 7, (500, 2), generator=g, dtype=torch.int32)
    data = entropy.encode(symbols, a)
    assert entropy.encode(symbols, b) == data
    assert torch.equal(entropy.decode(data, 500, b), symbols)


def test_hostile_words_decode_to_int32_or_are_refused_in_one_line():
    tables = peaked_tables()
    rng = np.random.default_rng(0)
    for _ in range(200):
        payload = rng.integers(0, 256, 4 * int(rng.integers(0, 40)), dtype=np.uint8).tobytes()
        try:
            symbols = entropy.decode(payload, 50, tables)
        except BitstreamError as exc:
            assert "\n" not in str(exc)
        else:
            assert symbols.dtype == torch.int32 and symbols.shape == (50, 2)


def test_tables_with_a_zero_frequency_are_refused():
    cdf = torch.tensor([[0, 100, 100, 2**16]], dtype=torch.int32)  # the second symbol could not be coded
    with pytest.raises(ValueError, match="every symbol codable"):
        entropy.EntropyTables(cdf, torch.tensor([4]), torch.tensor([0]))


def test_quantised_cdf_keeps_every_symbol_and_follows_the_pmf():
    pmf = [0.5, 0.25, 1e-9, 0.25 - 1e-9, 0.0]
    cdf = entropy.pmf_to_quantized_cdf(pmf)
    freq = np.diff(cdf)
    assert cdf[0] == 0 and cdf[-1] == 2**16 and (freq >= 1).all()
    assert math.isclose(freq[0] / 2**16, 0.5, abs_tol=1e-3) and freq[2] == 1 and freq[4] == 1
