"""Integer CDF tables and CompressAI's rANS range coder, shared by every latent codec.

Both codecs turn the latents φ of a file into a matrix of integer symbols ``(P, K)`` — one
row per patch, one column per code dimension — and code column ``k`` with CDF table ``k``.
The tables are quantised to 16 bits *once*, when the codec is fitted, and stored beside its
weights, so encoder and decoder use bit-identical tables in any process (recomputing them
from the float entropy model on the decoder side could differ in the last bit).

The coder is CompressAI's ``compressai.ans`` (``RansEncoder.encode_with_indexes``) with its
own conventions: table ``k`` has ``length[k] - 2`` regular symbols ``0 .. length[k] - 3``
(after subtracting ``offset[k]``) plus one escape symbol, after which values outside the
table are bypass-coded (still lossless, just expensive).

``compressai/__init__`` imports torchvision, torch_geometric and its datasets (about 6 s of
start-up); :func:`ans` and :func:`pmf_to_quantized_cdf` load only the two compiled extension
modules they need, so ``vcinr compress``/``decompress`` start fast.  They register them in
``sys.modules`` under their usual names, so a later ``import compressai`` reuses them.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

PRECISION = 16  # bits of the quantised CDFs (CompressAI's default)


def _extension(name: str) -> ModuleType:
    """``compressai.<name>`` (a compiled module) without running ``compressai/__init__``."""
    full = f"compressai.{name}"
    if full in sys.modules:
        return sys.modules[full]
    spec = importlib.util.find_spec("compressai")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("compressai is not installed")
    for folder in spec.submodule_search_locations:
        for path in sorted(Path(folder).glob(f"{name}.*")):
            if any(str(path).endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES):
                loader = importlib.machinery.ExtensionFileLoader(full, str(path))
                module_spec = importlib.util.spec_from_file_location(full, path, loader=loader)
                module = importlib.util.module_from_spec(module_spec)
                loader.exec_module(module)
                sys.modules[full] = module
                return module
    raise ImportError(f"compressai has no compiled module {name!r}")


def ans() -> ModuleType:
    """CompressAI's rANS coder module (``RansEncoder``, ``RansDecoder``)."""
    return _extension("ans")


def pmf_to_quantized_cdf(pmf: list[float], precision: int = PRECISION) -> list[int]:
    """CompressAI's pmf → integer CDF (every symbol keeps a frequency of at least 1)."""
    return list(_extension("_CXX").pmf_to_quantized_cdf(pmf, precision))


@dataclass
class EntropyTables:
    """One quantised CDF per code dimension, in CompressAI's layout.

    Attributes:
        cdf: ``(K, L)`` int32, row ``k`` valid up to ``length[k]`` entries, ending at 2**16.
        length: ``(K,)`` int32, number of CDF entries (regular symbols + escape + 1).
        offset: ``(K,)`` int32, added to a table index to get the symbol value.
    """

    cdf: torch.Tensor
    length: torch.Tensor
    offset: torch.Tensor

    def __post_init__(self) -> None:
        self.cdf = self.cdf.to(torch.int32).contiguous()
        self.length = self.length.to(torch.int32).reshape(-1).contiguous()
        self.offset = self.offset.to(torch.int32).reshape(-1).contiguous()
        k = self.cdf.shape[0]
        if self.cdf.ndim != 2 or self.length.shape != (k,) or self.offset.shape != (k,):
            raise ValueError("inconsistent entropy tables")
        if k == 0 or int(self.length.min()) < 3 or int(self.length.max()) > self.cdf.shape[1]:
            raise ValueError("entropy table lengths out of range")

    @property
    def dims(self) -> int:
        return self.cdf.shape[0]

    def frequencies(self) -> list[torch.Tensor]:
        """Per dimension, the integer frequencies of the regular symbols and the escape."""
        return [self.cdf[k, 1 : int(n)] - self.cdf[k, : int(n) - 1] for k, n in enumerate(self.length.tolist())]

    def min_bits_per_row(self) -> float:
        """A lower bound on the coded size of one row of symbols (bounds counts by file size)."""
        total = 0.0
        for freq in self.frequencies():
            total += -math.log2(int(freq.max()) / 2**PRECISION)
        return total

    def ideal_bits(self, symbols: torch.Tensor) -> float:
        """Code length in bits of ``symbols (P, K)`` under the tables, bypass cost included.

        This is the rate the entropy model predicts for the quantised tables the coder uses;
        the coder's output differs from it only by its final flush (a few bytes).
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
            if outside.numel():  # escape symbol + CompressAI's 4-bit bypass chunks
                bits -= float(logp[regular]) * outside.numel()
                raw = torch.where(outside < 0, -2 * outside - 1, 2 * (outside - regular))
                bits += float(_bypass_bits(raw).sum())
        return bits

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.cdf": self.cdf, f"{prefix}.length": self.length, f"{prefix}.offset": self.offset}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> EntropyTables:
        return cls(tensors[f"{prefix}.cdf"], tensors[f"{prefix}.length"], tensors[f"{prefix}.offset"])


def _bypass_bits(raw: torch.Tensor) -> torch.Tensor:
    """Bits CompressAI spends on a bypass-coded value (4-bit chunks plus their count)."""
    raw = raw.to(torch.int64).clamp_min(0)
    nbits = torch.where(raw > 0, torch.floor(torch.log2(raw.double().clamp_min(1))).to(torch.int64) + 1, 0)
    chunks = (nbits + 3) // 4  # 4-bit chunks of the value, then its chunk count in 4-bit digits
    return 4 * (chunks + chunks // 15 + 1)


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


def encode(symbols: torch.Tensor, tables: EntropyTables) -> bytes:
    """Range-code ``symbols (P, K)`` (row-major: patch by patch) into one byte string."""
    if symbols.ndim != 2 or symbols.shape[1] != tables.dims:
        raise ValueError(f"expected symbols of shape (P, {tables.dims}), got {tuple(symbols.shape)}")
    flat = symbols.to(torch.int32).reshape(-1).tolist()
    indexes = torch.arange(tables.dims, dtype=torch.int32).repeat(symbols.shape[0]).tolist()
    return ans().RansEncoder().encode_with_indexes(
        flat, indexes, tables.cdf.tolist(), tables.length.tolist(), tables.offset.tolist()
    )


def decode_padding(data_bytes: int, count: int) -> int:
    """Zero bytes to append to a stream of ``data_bytes`` so that decoding ``count`` symbols stays inside.

    CompressAI's decoder reads 32-bit words without bounds checks.  A regular symbol reads at
    most one word; an escaped one reads a 4-bit count ``n`` (continued while it is 15) and
    then ``n`` 4-bit chunks, refilling its 64-bit state with one word per at least 7 chunks.
    Past the end of the data every word read is zero, which ends a run of 15s within the
    state's remaining <= 10 nibbles: <= 150 chunks, so <= 25 words (100 bytes) per symbol.
    Inside the data every 0xF nibble can extend a run by 15 chunks: <= 5 words (20 bytes)
    per data byte.  With this padding a hostile payload (with a valid CRC) decodes to
    garbage symbols but never reads past the buffer.
    """
    return 64 + 24 * data_bytes + 128 * count


def decode(data: bytes, rows: int, tables: EntropyTables) -> torch.Tensor:
    """Inverse of :func:`encode`: ``rows × K`` symbols from ``data``.

    The stream is zero-padded by :func:`decode_padding`, since the compiled decoder does not
    check bounds; a damaged stream then decodes to garbage symbols instead of reading past
    the buffer (the container's CRC rejects accidentally damaged streams before they get here).
    """
    count = rows * tables.dims
    padded = bytes(data) + bytes(decode_padding(len(data), count))
    indexes = torch.arange(tables.dims, dtype=torch.int32).repeat(rows).tolist()
    values = ans().RansDecoder().decode_with_indexes(
        padded, indexes, tables.cdf.tolist(), tables.length.tolist(), tables.offset.tolist()
    )
    return torch.tensor(values, dtype=torch.int32).reshape(rows, tables.dims)
