"""The two latent codecs as the encoder and decoder run them: φ → integer symbols → φ̂.

* :class:`LearnedCodec` — VC-INR's non-linear transform coder (paper §3.4, Figure 2b):
  ``z = g_a(normalise(φ))``, ``ẑ = round(z − m) + m`` with ``m`` the entropy bottleneck's
  per-dimension medians, ``φ̂ = denormalise(g_s(ẑ))``; ``g_a``/``g_s`` are residual MLPs with
  SELU.  The symbols ``round(z − m)`` are coded with the bottleneck's quantised CDFs.
* :class:`UniformCodec` — the COIN++ baseline: ``normalise(φ)`` clipped to ``±clip`` standard
  deviations and cut into ``2**bits`` equal bins; the decoder takes bin centres.  Symbols are
  coded with a factorised histogram model (one CDF per dimension from train-set counts).

Both normalise φ per dimension with train-set mean and standard deviation (Tables 3–7,
"Normalise φ").  Training the transform coder needs the entropy bottleneck
(:mod:`vcinr.codec.bottleneck`) and lives in :mod:`vcinr.codec.transform`; these inference
classes need only torch and the stored tables.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from vcinr.codec.entropy import EntropyTables, tables_from_counts

MIN_STD = 1e-8  # dimensions with a smaller train-set spread are only centred, not scaled
MAX_BITS = 12  # 2**12 symbols per dimension still fit 16-bit CDFs comfortably


class ResidualMLP(nn.Module):
    """``Linear → [x + (SELU → Linear → SELU → Linear)(x)] × blocks → SELU → Linear`` (Fig. 2b)."""

    def __init__(self, in_dim: int, out_dim: int, width: int, blocks: int):
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SELU(), nn.Linear(width, width), nn.SELU(), nn.Linear(width, width)) for _ in range(blocks)
        )
        self.out = nn.Sequential(nn.SELU(), nn.Linear(width, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


def latent_stats(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension train-set mean and standard deviation of ``latents (num_items, D)``."""
    latents = latents.double()
    mean = latents.mean(0)
    std = latents.std(0, unbiased=False) if latents.shape[0] > 1 else torch.ones_like(mean)
    std = torch.where(std > MIN_STD, std, torch.ones_like(std))
    return mean.float(), std.float()


class LatentCodec(ABC):
    """φ ``(P, D)`` ↔ integer symbols ``(P, K)`` coded with :attr:`tables`."""

    kind: str
    mean: torch.Tensor
    std: torch.Tensor
    tables: EntropyTables

    @property
    def latent_dim(self) -> int:
        return self.mean.shape[0]

    @property
    def symbol_dim(self) -> int:
        return self.tables.dims

    def normalise(self, phi: torch.Tensor) -> torch.Tensor:
        return (phi - self.mean) / self.std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    @abstractmethod
    def to_symbols(self, phi: torch.Tensor) -> torch.Tensor:
        """Quantise latents to int32 symbols ``(P, K)`` (the encoder side)."""

    @abstractmethod
    def from_symbols(self, symbols: torch.Tensor) -> torch.Tensor:
        """Reconstruct latents φ̂ ``(P, D)`` from symbols (the decoder side)."""

    def valid_symbols(self, symbols: torch.Tensor) -> bool:
        """Whether the encoder could have written ``symbols`` (a decoder's check on hostile streams)."""
        return True

    def estimated_bits(self, symbols: torch.Tensor) -> float:
        """The entropy model's rate for ``symbols`` (the quantised tables the coder uses)."""
        return self.tables.ideal_bits(symbols)

    @abstractmethod
    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything the decoder needs, for a safetensors file."""


class LearnedCodec(LatentCodec):
    """The transform coder at inference.

    ``weight_dtype`` is the precision ``g_a``/``g_s`` are stored in.  New levels store them in
    float16, half of a level's bytes (the bundle's size, docs/models.md); the constructor rounds
    the transforms to that precision (they still compute in float32), so the codec ``fit-codec``
    scores is bit for bit the one its file holds, and the one every encoder and decoder loads.
    Levels stored in float32 (fitted before) load as they are.
    """

    kind = "learned"
    STORED_DTYPES = (torch.float16, torch.float32)

    def __init__(self, g_a: ResidualMLP, g_s: ResidualMLP, medians: torch.Tensor, tables: EntropyTables,
                 mean: torch.Tensor, std: torch.Tensor, weight_dtype: torch.dtype = torch.float16):
        if weight_dtype not in self.STORED_DTYPES:
            raise ValueError(f"transform weights are stored as float16 or float32, not {weight_dtype}")
        self.weight_dtype = weight_dtype
        self.g_a, self.g_s = g_a.eval().requires_grad_(False), g_s.eval().requires_grad_(False)
        with torch.no_grad():
            for weight in (*self.g_a.parameters(), *self.g_s.parameters()):
                weight.copy_(weight.to(weight_dtype).float())
        self.medians = medians.detach().float().reshape(-1)
        self.tables, self.mean, self.std = tables, mean.float(), std.float()
        if self.medians.shape[0] != tables.dims:
            raise ValueError("medians and entropy tables disagree on the code dimension")

    def analysis(self, phi: torch.Tensor) -> torch.Tensor:
        """The continuous symbols ``g_a(normalise(φ)) − m`` that the encoder rounds."""
        return self.g_a(self.normalise(phi)) - self.medians

    def synthesis(self, symbols: torch.Tensor) -> torch.Tensor:
        """φ̂ from (possibly continuous) symbols, differentiably: what the decoder runs on integers."""
        return self.denormalise(self.g_s(symbols + self.medians))

    @torch.no_grad()
    def to_symbols(self, phi: torch.Tensor) -> torch.Tensor:
        return torch.round(self.analysis(phi)).to(torch.int32)

    @torch.no_grad()
    def from_symbols(self, symbols: torch.Tensor) -> torch.Tensor:
        return self.synthesis(symbols.to(torch.float32))

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {"mean": self.mean, "std": self.std, "medians": self.medians, **self.tables.tensors("tables")}
        out.update({f"g_a.{k}": v.to(self.weight_dtype) for k, v in self.g_a.state_dict().items()})
        out.update({f"g_s.{k}": v.to(self.weight_dtype) for k, v in self.g_s.state_dict().items()})
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], arch: dict) -> LearnedCodec:
        """Rebuild from :meth:`tensors`; ``arch`` = ``{"width", "blocks", "z_dim"}`` (from the JSON)."""
        dim = tensors["mean"].shape[0]
        with torch.device("meta"):  # filled by the file's tensors: an arch that does not match them allocates nothing
            g_a = ResidualMLP(dim, arch["z_dim"], arch["width"], arch["blocks"])
            g_s = ResidualMLP(arch["z_dim"], dim, arch["width"], arch["blocks"])
        stored = {k: v for k, v in tensors.items() if k.startswith(("g_a.", "g_s."))}
        dtypes = {v.dtype for v in stored.values()}
        if len(dtypes) != 1 or not dtypes <= set(cls.STORED_DTYPES):
            raise ValueError(f"transform weights must all be float16 or all float32; found {sorted(map(str, dtypes))}")
        g_a.load_state_dict({k[4:]: v.float() for k, v in stored.items() if k.startswith("g_a.")}, assign=True)
        g_s.load_state_dict({k[4:]: v.float() for k, v in stored.items() if k.startswith("g_s.")}, assign=True)
        return cls(g_a, g_s, tensors["medians"], EntropyTables.from_tensors(tensors, "tables"),
                   tensors["mean"], tensors["std"], weight_dtype=dtypes.pop())


class UniformCodec(LatentCodec):
    """COIN++-style uniform quantisation of normalised latents to ``bits`` bits per entry."""

    kind = "uniform"

    def __init__(self, bits: int, clip: float, mean: torch.Tensor, std: torch.Tensor, tables: EntropyTables):
        if not 1 <= bits <= MAX_BITS:
            raise ValueError(f"bits must be in 1..{MAX_BITS}, got {bits}")
        if not clip > 0:
            raise ValueError(f"clip must be positive, got {clip}")
        self.bits, self.clip = int(bits), float(clip)
        self.mean, self.std, self.tables = mean.float(), std.float(), tables
        if tables.dims != self.mean.shape[0]:
            raise ValueError("entropy tables and statistics disagree on the latent dimension")

    @property
    def levels(self) -> int:
        return 2**self.bits

    @property
    def step(self) -> float:
        """Bin width in normalised units."""
        return 2.0 * self.clip / self.levels

    @torch.no_grad()
    def to_symbols(self, phi: torch.Tensor) -> torch.Tensor:
        x = self.normalise(phi.float())
        return torch.floor((x + self.clip) / self.step).clamp(0, self.levels - 1).to(torch.int32)

    def valid_symbols(self, symbols: torch.Tensor) -> bool:
        """:meth:`to_symbols` clamps to ``0 .. 2**bits - 1``; anything else is a forged stream."""
        return bool(((symbols >= 0) & (symbols < self.levels)).all())

    @torch.no_grad()
    def from_symbols(self, symbols: torch.Tensor) -> torch.Tensor:
        x = (symbols.to(torch.float32) + 0.5) * self.step - self.clip
        return self.denormalise(x)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "std": self.std, **self.tables.tensors("tables")}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], bits: int, clip: float) -> UniformCodec:
        return cls(bits, clip, tensors["mean"], tensors["std"], EntropyTables.from_tensors(tensors, "tables"))

    @classmethod
    def fit(cls, latents: torch.Tensor, bits: int, clip: float = 3.0) -> UniformCodec:
        """Statistics and the factorised histogram model from train-set latents ``(num, D)``."""
        if not 1 <= bits <= MAX_BITS:
            raise ValueError(f"bits must be in 1..{MAX_BITS}, got {bits}")
        mean, std = latent_stats(latents)
        levels = 2**bits
        step = 2.0 * clip / levels
        # same formula as to_symbols, before the tables exist
        symbols = torch.floor(((latents.float() - mean) / std + clip) / step).clamp(0, levels - 1).long()
        dim = latents.shape[1]
        counts = torch.zeros(dim, levels, dtype=torch.float64)
        counts.scatter_add_(1, symbols.T.contiguous(), torch.ones(dim, symbols.shape[0], dtype=torch.float64))
        return cls(bits, clip, mean, std, tables_from_counts(counts))

