"""Integer CDF tables and the range coder that codes symbols with them, shared by every latent codec.

Both codecs turn the latents φ of a file into a matrix of integer symbols ``(P, K)`` — one
row per patch, one column per code dimension — and code column ``k`` with CDF table ``k``.
The tables are quantised to 16 bits *once*, when the codec is fitted, and stored beside its
weights, so encoder and decoder build their coding models from the same integers in any
process (recomputing them from the float entropy model could differ in the last bit).

Layout of a table (CompressAI's, which the stored codecs use): table ``k`` has
``length[k] - 2`` regular symbols ``0 .. length[k] - 3`` (a symbol value minus ``offset[k]``)
and one escape symbol; a value outside the table is coded as the escape followed by its
bypass code (see :func:`encode`), so any ``int32`` round-trips.

The coder is ``constriction``'s range coder (a compiled, bounds-checked Rust library).  Each
table becomes a ``Categorical`` model with ``perfect=True`` from its integer frequencies:
constriction's 24-bit models then hold exactly those frequencies scaled by 2**8 (the optimal
approximation of a distribution that is exactly representable), so the rate the tables
predict is the rate the coder spends, and the models are a pure function of the stored
integers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import constriction
import numpy as np
import torch

from vcinr.errors import BitstreamError

PRECISION = 16  # bits of the stored CDFs
BYPASS_LENGTHS = 34  # an escaped value's bypass word w has 1 .. 34 bits (w <= 2**33 + 1)
CHUNK = 16  # bypass bits below the leading one are coded in a chunk of <= 16 bits, then the rest


def pmf_to_quantized_cdf(pmf: list[float], precision: int = PRECISION) -> list[int]:
    """Probabilities → integer CDF ``[0, …, 2**precision]`` in which every symbol keeps a frequency >= 1.

    The algorithm of CompressAI's ``pmf_to_quantized_cdf`` (from ``ryg_rans``), step for step,
    so that codecs fitted here get the tables CompressAI gave them: round ``p · 2**precision``
    (in float32, halves away from zero), rescale to the total by integer division, then give
    each symbol left at zero one unit taken from the least frequent symbol that can spare it.
    """
    scale = 1 << precision
    scaled = np.asarray(pmf, dtype=np.float32) * np.float32(scale)
    freq = np.floor(np.maximum(scaled, 0).astype(np.float64) + 0.5).astype(np.int64)
    freq = (scale * freq) // int(freq.sum())
    cdf = np.concatenate(([0], np.cumsum(freq)))
    cdf[-1] = scale
    for i in range(len(cdf) - 1):
        if cdf[i] == cdf[i + 1]:
            widths = np.diff(cdf)
            spare = np.flatnonzero(widths > 1)
            steal = int(spare[np.argmin(widths[spare])])  # the first of the least frequent
            if steal < i:
                cdf[steal + 1 : i + 1] -= 1
            else:
                cdf[i + 1 : steal + 1] += 1
    return cdf.tolist()


@dataclass
class EntropyTables:
    """One quantised CDF per code dimension.

    Attributes:
        cdf: ``(K, L)`` int32, row ``k`` valid up to ``length[k]`` entries, ending at 2**16.
        length: ``(K,)`` int32, number of CDF entries (regular symbols + escape + 1).
        offset: ``(K,)`` int32, added to a table index to get the symbol value.
    """

    cdf: torch.Tensor
    length: torch.Tensor
    offset: torch.Tensor
    _models: list | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.cdf = self.cdf.to(torch.int32).contiguous()
        self.length = self.length.to(torch.int32).reshape(-1).contiguous()
        self.offset = self.offset.to(torch.int32).reshape(-1).contiguous()
        k = self.cdf.shape[0]
        if self.cdf.ndim != 2 or self.length.shape != (k,) or self.offset.shape != (k,):
            raise ValueError("inconsistent entropy tables")
        if k == 0 or int(self.length.min()) < 3 or int(self.length.max()) > self.cdf.shape[1]:
            raise ValueError("entropy table lengths out of range")
        for row, n in zip(self.cdf, self.length.tolist()):
            if int(row[0]) != 0 or int(row[n - 1]) != 2**PRECISION or not bool((row[1:n] > row[: n - 1]).all()):
                raise ValueError("entropy tables are not 16-bit CDFs with every symbol codable")

    @property
    def dims(self) -> int:
        return self.cdf.shape[0]

    @property
    def regular(self) -> np.ndarray:
        """``(K,)`` the number of regular symbols per table (the escape symbol's index)."""
        return self.length.numpy().astype(np.int64) - 2

    def frequencies(self) -> list[torch.Tensor]:
        """Per dimension, the integer frequencies of the regular symbols and the escape."""
        return [self.cdf[k, 1 : int(n)] - self.cdf[k, : int(n) - 1] for k, n in enumerate(self.length.tolist())]

    def models(self) -> list:
        """One constriction ``Categorical`` per table, built once (a few ms for 64 tables)."""
        if self._models is None:
            categorical = constriction.stream.model.Categorical
            self._models = [categorical(freq.numpy().astype(np.float64), perfect=True) for freq in self.frequencies()]
        return self._models

    def min_bits_per_row(self) -> float:
        """A lower bound on the coded size of one row of symbols (bounds counts by file size)."""
        total = 0.0
        for freq in self.frequencies():
            total += -math.log2(int(freq.max()) / 2**PRECISION)
        return total

    def ideal_bits(self, symbols: torch.Tensor) -> float:
        """Code length in bits of ``symbols (P, K)`` under the tables, bypass cost included.

        This is the rate the coder spends, apart from its final flush (at most two 32-bit words).
        """
        symbols = symbols.to(torch.int64)
        bits = 0.0
        for k, freq in enumerate(self.frequencies()):
            values = symbols[:, k] - int(self.offset[k])
            regular = len(freq) - 1
            inside = (values >= 0) & (values < regular)
            logp = torch.log2(freq.double() / 2**PRECISION)
            bits -= float(logp[values[inside]].sum())
            outside = values[~inside]
            if outside.numel():  # escape symbol, then the bypass code
                bits -= float(logp[regular]) * outside.numel()
                lengths = _bit_length(_bypass_words(outside.numpy(), regular))
                bits += float(np.sum(lengths - 1)) + math.log2(BYPASS_LENGTHS) * outside.numel()
        return bits

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.cdf": self.cdf, f"{prefix}.length": self.length, f"{prefix}.offset": self.offset}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> EntropyTables:
        return cls(tensors[f"{prefix}.cdf"], tensors[f"{prefix}.length"], tensors[f"{prefix}.offset"])


def tables_from_counts(counts: torch.Tensor, precision: int = PRECISION) -> EntropyTables:
    """Factorised histogram model: one CDF per dimension from symbol counts ``(K, S)``.

    Counts get +0.5 (Krichevsky–Trofimov), so symbols never seen in training stay codable.
    Symbols are ``0 .. S - 1`` (offset 0); the escape symbol gets the minimum frequency.
    """
    k, s = counts.shape
    if s + 1 >= 2**precision:
        raise ValueError(f"{s} symbols do not fit {precision}-bit CDFs")
    rows = []
    for row in counts.double():
        pmf = (row + 0.5) / (row.sum() + 0.5 * s)
        rows.append(pmf_to_quantized_cdf(pmf.tolist() + [0.0], precision))
    cdf = torch.tensor(rows, dtype=torch.int32)
    return EntropyTables(cdf, torch.full((k,), s + 2, dtype=torch.int32), torch.zeros(k, dtype=torch.int32))


# --- bypass code of escaped values ----------------------------------------------------------------
# A value v outside its table (v < 0 or v >= R regular symbols) becomes the word
# w = zigzag(v) + 1 >= 1, zigzag(v) = -2v - 1 for v < 0 and 2(v - R) for v >= R, and w is
# sent as its bit length n + 1 (uniform over 1 .. 34), then its n bits below the leading one:
# the low min(n, 16) bits, then the remaining n - 16 (each part uniform over its 2**bits values).


def _bypass_words(values: np.ndarray, regular: np.ndarray | int) -> np.ndarray:
    values = values.astype(np.int64)
    return np.where(values < 0, -2 * values - 1, 2 * (values - regular)) + 1


def _bit_length(words: np.ndarray) -> np.ndarray:
    """Bit length of positive int64 words (exact, unlike a float log2)."""
    lengths = np.zeros(words.shape, dtype=np.int64)
    rest = words.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        big = rest >= (1 << shift)
        lengths += big * shift
        rest = np.where(big, rest >> shift, rest)
    return lengths + (rest > 0)


def encode(symbols: torch.Tensor, tables: EntropyTables) -> bytes:
    """Range-code ``symbols (P, K)``: column by column, then the bypass codes; 32-bit words, little-endian."""
    uniform = constriction.stream.model.Uniform
    if symbols.ndim != 2 or symbols.shape[1] != tables.dims:
        raise ValueError(f"expected symbols of shape (P, {tables.dims}), got {tuple(symbols.shape)}")
    values = symbols.to(torch.int64).numpy().T - tables.offset.numpy()[:, None]  # (K, P)
    regular = tables.regular[:, None]
    escaped = (values < 0) | (values >= regular)
    indices = np.where(escaped, regular, values).astype(np.int32)
    encoder = constriction.stream.queue.RangeEncoder()
    for column, model in zip(indices, tables.models()):
        encoder.encode(column, model)
    words = _bypass_words(values[escaped], np.broadcast_to(regular, values.shape)[escaped])
    if words.size:
        n = _bit_length(words) - 1
        encoder.encode(n.astype(np.int32), uniform(BYPASS_LENGTHS))
        low_bits, high_bits = np.minimum(n, CHUNK), np.maximum(n - CHUNK, 0)
        low, high = words & ((1 << low_bits) - 1), (words >> CHUNK) & ((1 << high_bits) - 1)
        for part, bits in ((low, low_bits), (high, high_bits)):
            encoder.encode(part[bits > 0].astype(np.int32), uniform(), (1 << bits[bits > 0]).astype(np.int32))
    return encoder.get_compressed().astype("<u4").tobytes()


def decode(data: bytes, rows: int, tables: EntropyTables) -> torch.Tensor:
    """Inverse of :func:`encode`: ``rows × K`` symbols from ``data``.

    The decoder is bounds-checked: data that no encoder could have written is refused with a
    :class:`~vcinr.errors.BitstreamError`, and a stream that ends early reads as zero words
    (garbage symbols, which the codec's checks and the container's CRC stand in front of).
    """
    uniform = constriction.stream.model.Uniform
    if len(data) % 4:
        raise BitstreamError(f"corrupt payload: {len(data)} bytes is not a whole number of 32-bit words")
    decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(bytes(data), dtype="<u4").astype(np.uint32))
    try:
        indices = np.stack([decoder.decode(model, rows) for model in tables.models()]).astype(np.int64)  # (K, P)
        regular = np.broadcast_to(tables.regular[:, None], indices.shape)
        escaped = indices == regular
        values = indices.copy()
        count = int(escaped.sum())
        if count:
            n = decoder.decode(uniform(BYPASS_LENGTHS), count).astype(np.int64)
            low_bits, high_bits = np.minimum(n, CHUNK), np.maximum(n - CHUNK, 0)
            low, high = np.zeros(count, np.int64), np.zeros(count, np.int64)
            if (low_bits > 0).any():
                low[low_bits > 0] = decoder.decode(uniform(), (1 << low_bits[low_bits > 0]).astype(np.int32))
            if (high_bits > 0).any():
                high[high_bits > 0] = decoder.decode(uniform(), (1 << high_bits[high_bits > 0]).astype(np.int32))
            zigzag = ((1 << n) | (high << CHUNK) | low) - 1
            values[escaped] = np.where(zigzag % 2 == 1, -(zigzag + 1) // 2, zigzag // 2 + regular[escaped])
    except AssertionError:  # constriction's word for data that its models cannot have produced
        raise BitstreamError("corrupt payload: not a range-coded stream for this codec") from None
    symbols = values + tables.offset.numpy().astype(np.int64)[:, None]
    if symbols.size and (symbols.min() < -(2**31) or symbols.max() >= 2**31):
        raise BitstreamError("corrupt payload: a bypass-coded symbol outside int32")
    return torch.from_numpy(np.ascontiguousarray(symbols.T).astype(np.int32))
