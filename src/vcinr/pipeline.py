"""Compress a file to ``.vci`` and back, end to end (issue 3; DESIGN.md "Data flow").

Encoding: ``read_signal`` (the model's modality) → patches of the model's item shape (or the
whole grid for unpatched models) → Meta-SGD inner loop per patch → latents φ → the quality
level's codec → integer symbols → one rANS stream → ``.vci`` container.

Decoding runs the exact inverse and is deterministic: symbols → φ̂ → shared INR → patches
merged → features clamped to [0, 1] (occupancy probabilities for voxel models) → the
modality writer.  The encoder runs this same decoder on the bytes it is about to write and
measures quality on what the writer produces when that is read back (8-bit rounding for
images and video, 16-bit samples for audio, ...), in the input's own format (or the
modality's first writable format if the input's cannot be written).  So the PSNR that
``compress`` prints is the PSNR of ``decompress``'s output in that format.

Signals that carry their own coordinates (a scene's cameras, see
:meth:`vcinr.modalities.base.Modality.coords_from_meta`) are coded whole, as one item, with
those coordinates taken from the signal's meta — which the bitstream stores, so the decoder
renders exactly the views the encoder saw.

Rate: ``bpp = 8 · (bytes of the .vci file, header included) / grid points``; for audio also
``kbps = 8 · bytes / seconds / 1000``.  The entropy model's estimate covers the payload only;
the difference to the file size is the container overhead plus the coder's flush.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from vcinr.backend import one_thread_map
from vcinr.codec import entropy
from vcinr.codec.bitstream import Header, fingerprint_prefix, pack, short, unpack
from vcinr.codec.search import SearchSettings, level_symbols
from vcinr.codec.levels import QualityLevel, find_level_by_fingerprint, load_level
from vcinr.errors import BitstreamError, InputError
from vcinr.layout import bitstream_layout, item_layout
from vcinr.limits import MAX_VCI_BYTES, read_bounded
from vcinr.meta.losses import Loss, get_loss
from vcinr.meta.model import LoadedModel, load_model
from vcinr.modalities import get_modality, read_signal, write_signal
from vcinr.patching import merge_target, patch_count, patch_mask, smooth_seams_, split_patches
from vcinr.schema import DECODE_BATCH
from vcinr.signal import MAX_POINTS, Signal, grid_coordinates
from vcinr.storage import atomic_write_bytes

BATCH = DECODE_BATCH  # patches per inner-loop / decoder batch; fixed so decoding is reproducible
# With signal.MAX_POINTS, the limit that keeps a hostile .vci file from making the decoder
# allocate more than ~1 GB: symbols in the range-coded stream.  The encoder refuses larger
# inputs, so it never writes a file the decoder would refuse.
MAX_SYMBOLS = 1 << 22


@dataclass
class CompressReport:
    input: Path
    output: Path
    quality: str
    modality: str
    grid_shape: tuple[int, ...]
    points: int
    patches: int
    bytes: int
    payload_bytes: int
    estimated_bits: float  # the entropy model's rate for the payload
    bpp: float
    kbps: float | None  # audio only
    metric: str  # "psnr" (dB) or "accuracy"
    value: float
    seconds: float

    @property
    def estimated_bpp(self) -> float:
        return self.estimated_bits / self.points

    @property
    def overhead_bytes(self) -> int:
        """Container bytes besides the payload (header, meta, CRC)."""
        return self.bytes - self.payload_bytes

    def summary(self) -> str:
        rate = f"{self.kbps:.2f} kbps ({self.bpp:.4f} bits/sample)" if self.kbps is not None else f"{self.bpp:.4f} bpp"
        quality = f"PSNR {self.value:.2f} dB" if self.metric == "psnr" else f"accuracy {100 * self.value:.2f}%"
        return (f"{self.input.name} -> {self.output}: {self.bytes} bytes, {rate}, {quality}, "
                f"entropy model {self.estimated_bits:.0f} bits + {self.overhead_bytes} B container, "
                f"quality {self.quality}, {self.patches} patch{'es' if self.patches != 1 else ''}, "
                f"{self.seconds:.1f} s")


@dataclass
class DecompressReport:
    input: Path
    output: Path
    quality: str
    modality: str
    grid_shape: tuple[int, ...]
    points: int
    bytes: int
    bpp: float
    kbps: float | None
    seconds: float

    def summary(self) -> str:
        rate = f"{self.kbps:.2f} kbps" if self.kbps is not None else f"{self.bpp:.4f} bpp"
        size = get_modality(self.modality).size_text(self.grid_shape)
        return (f"{self.input.name} -> {self.output}: {self.modality} {size}, {self.bytes} bytes, {rate}, "
                f"quality {self.quality}, {self.seconds:.1f} s")


# --- helpers ----------------------------------------------------------------------------------


def signal_quality(original: Signal, decoded: Signal, loss: Loss | str = "mse") -> tuple[str, float]:
    """``(metric, value)`` of ``decoded`` by the model's loss: ``("psnr", dB)``, ``("accuracy", fraction)``, ..."""
    a, b = original.features.double(), decoded.features.double()
    if a.shape != b.shape:
        raise InputError(f"cannot compare signals of shapes {tuple(a.shape)} and {tuple(b.shape)}")
    loss = get_loss(loss)
    return loss.metric, loss.exact_quality(float(loss.feature_errors(b, a).mean()))


def kbps(signal_meta: dict, grid_shape: tuple[int, ...], size: int, modality: str) -> float | None:
    """Kilobits per second where the modality gives rates so (audio; ``None`` otherwise or without a duration)."""
    seconds = get_modality(modality).duration(signal_meta, grid_shape)
    return None if seconds is None else 8.0 * size / seconds / 1000.0


def _points(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _read_input(path: Path, loaded: LoadedModel) -> Signal:
    spec = loaded.spec
    signal = read_signal(path, spec.modality)
    if signal.in_dim != spec.in_dim or len(signal.grid_shape) != len(spec.item_shape):
        raise InputError(f"{path}: a {len(signal.grid_shape)}-d {signal.modality} grid, but the model codes "
                         f"{len(spec.item_shape)}-d grids")
    if signal.out_dim != spec.out_dim:
        raise InputError(f"{path}: has {signal.out_dim} channel{'s' if signal.out_dim != 1 else ''} "
                         f"but the model was trained on {spec.out_dim}")
    return signal


def store_batches(fn: Callable[[torch.Tensor], torch.Tensor], items: torch.Tensor,
                  store: Callable[[int, torch.Tensor], None], workers: int | None = None) -> None:
    """``fn`` on fixed batches of ``BATCH`` items, without autograd, each batch's torch ops on one
    thread; each result goes to ``store(start, result)`` as soon as it is computed and is not kept.

    A batch is then computed the same way whichever thread runs it: the decoder's φ̂ and INR
    outputs go through float matmuls whose reduction order may depend on the number of
    threads, and fixing it keeps decoding bit-identical across processes (on the same
    platform), so the encoder's PSNR is exactly the decoder's.  ``workers`` batches run at a
    time (default: as many as the caller has torch threads), so a decoder still uses every core
    (:func:`vcinr.backend.one_thread_map`; the caller's thread settings are left as they are).
    ``store`` may be called from several threads at once (for disjoint ``start``s).
    """
    def run(start: int) -> None:
        with torch.no_grad():  # grad mode is per thread
            store(start, fn(items[start : start + BATCH]))

    starts = range(0, items.shape[0], BATCH)
    one_thread_map(run, starts, workers=min(len(starts), workers or torch.get_num_threads()))


def map_batches(fn: Callable[[torch.Tensor], torch.Tensor], items: torch.Tensor,
                workers: int | None = None) -> torch.Tensor:
    """:func:`store_batches`, the results concatenated in order."""
    results: dict[int, torch.Tensor] = {}
    store_batches(fn, items, results.__setitem__, workers)
    return torch.cat([results[start] for start in sorted(results)])


# --- encode / decode in memory ----------------------------------------------------------------


def encode_signal(signal: Signal, loaded: LoadedModel, level: QualityLevel, progress: bool = False,
                  name: str = "input", search: SearchSettings = SearchSettings()) -> tuple[bytes, float, int]:
    """``signal`` → ``.vci`` bytes; returns ``(bytes, estimated payload bits, patch count)``.

    ``search`` sets the encoder-side rate–distortion search (:mod:`vcinr.codec.search`) of
    learned levels; ``SearchSettings(steps=0)`` rounds plainly.
    """
    spec, model = loaded.spec, loaded.model
    grid = signal.grid_shape
    if _points(grid) > MAX_POINTS:
        raise InputError(f"{name}: a grid of {list(grid)} is larger than vcinr codes ({MAX_POINTS} points)")
    layout = item_layout(loaded, level, grid, signal.meta)
    item_shape = layout.item_shape
    if layout.patched:
        count = patch_count(grid, item_shape)
        if count * level.codec.symbol_dim > MAX_SYMBOLS:
            raise InputError(f"{name}: a grid of {list(grid)} needs {count} patches, more than vcinr codes at this "
                             f"quality level ({MAX_SYMBOLS // level.codec.symbol_dim})")
        patches = split_patches(signal.features, item_shape)
    else:
        if grid != item_shape:
            raise InputError(f"{name}: grid {list(grid)} but this model only codes {spec.modality} signals of "
                             f"exactly {list(item_shape)} (it was trained without patches)")
        if not layout.carried and not torch.allclose(signal.coords.reshape(-1, spec.in_dim), layout.coords,
                                                     atol=1e-5, rtol=0):
            raise InputError(f"{name}: its coordinates differ from those the model was trained on")
        patches = signal.features[None]
    features = patches.reshape(patches.shape[0], -1, spec.out_dim).float()
    phi = model.encode(layout.coords, features, BATCH, progress, "encode (inner loop)")
    mask = patch_mask(grid, item_shape).flatten(1) if layout.patched else None
    symbols = level_symbols(model, level.codec, level.record.get("lambda"), layout.coords, features, phi, mask,
                            search, BATCH, progress)
    payload = entropy.encode(symbols, level.codec.tables)
    header = Header(loaded.fingerprint, level.fingerprint, level.codec.kind, spec.modality, spec.out_dim, grid,
                    item_shape, int(symbols.shape[0]), int(symbols.shape[1]), dict(signal.meta))
    try:
        data = pack(header, payload)
    except ValueError as exc:
        raise InputError(f"{name}: {exc}") from None
    return data, level.codec.estimated_bits(symbols), int(symbols.shape[0])


def decode_latents(data: bytes, loaded: LoadedModel, name: str = "bitstream",
                   level: QualityLevel | None = None) -> tuple[torch.Tensor, Header, QualityLevel]:
    """``.vci`` bytes → the latents φ̂ ``(patches, D)``, validating everything against the model first."""
    header, payload = unpack(data)
    spec = loaded.spec
    if header.model_fingerprint != fingerprint_prefix(loaded.fingerprint):
        raise BitstreamError(f"{name} was made for another model (fingerprint {short(header.model_fingerprint)}), "
                             f"not {loaded.directory} ({short(loaded.fingerprint)}); decode it with the model it was "
                             "compressed with")
    if level is None or fingerprint_prefix(level.fingerprint) != header.codec_fingerprint:
        info = find_level_by_fingerprint(loaded, header.codec_fingerprint)
        if info is None:
            raise BitstreamError(f"{name} was made with a codec (quality level, fingerprint "
                                 f"{short(header.codec_fingerprint)}) that {loaded.directory} does not have; "
                                 "it was refitted or removed")
        level = load_level(loaded, info)
    codec = level.codec
    if header.modality != spec.modality or header.channels != spec.out_dim:
        raise BitstreamError(f"{name}: header says {header.modality} with {header.channels} channels, the model "
                             f"codes {spec.modality} with {spec.out_dim}")
    grid = tuple(header.grid_shape)
    layout = bitstream_layout(loaded, level, header, name)
    item_shape = layout.item_shape
    if tuple(header.patch_shape) != item_shape or header.symbols_per_patch != codec.symbol_dim:
        raise BitstreamError(f"{name}: patch shape {list(header.patch_shape)} × {header.symbols_per_patch} symbols "
                             f"does not match the model ({list(item_shape)} × {codec.symbol_dim})")
    if not layout.patched:
        if grid != item_shape:
            raise BitstreamError(f"{name}: grid {list(grid)} differs from the model's {list(item_shape)}")
        expected = 1
    else:
        if len(grid) != len(item_shape):
            raise BitstreamError(f"{name}: a {len(grid)}-d grid for a model of {len(item_shape)}-d items")
        expected = patch_count(grid, item_shape)
    if header.patch_count != expected:
        raise BitstreamError(f"{name}: {header.patch_count} patches for a {list(grid)} grid (expected {expected})")
    if _points(grid) > MAX_POINTS or header.patch_count * codec.symbol_dim > MAX_SYMBOLS:
        raise BitstreamError(f"{name}: grid {list(grid)} ({header.patch_count} patches) is larger than this decoder "
                             f"allows ({MAX_POINTS} points, {MAX_SYMBOLS} symbols)")
    # Every patch costs at least min_bits_per_row bits, so a short payload cannot claim many patches.
    if header.patch_count * codec.tables.min_bits_per_row() > 8 * len(payload) + 64:
        raise BitstreamError(f"{name}: {header.patch_count} patches cannot fit in a payload of {len(payload)} bytes")

    symbols = entropy.decode(payload, header.patch_count, codec.tables)
    if not codec.valid_symbols(symbols):
        raise BitstreamError(f"{name}: corrupt payload (symbols outside the codec's range)")
    phi_hat = map_batches(codec.from_symbols, symbols)
    return phi_hat, header, level


def decode_bytes(data: bytes, loaded: LoadedModel, name: str = "bitstream",
                 level: QualityLevel | None = None) -> tuple[Signal, Header, QualityLevel]:
    """``.vci`` bytes → decoded :class:`Signal`, validating everything against the model first."""
    phi_hat, header, level = decode_latents(data, loaded, name, level)
    spec, model = loaded.spec, loaded.model
    grid = tuple(header.grid_shape)
    layout = bitstream_layout(loaded, level, header, name)
    item_shape = layout.item_shape
    decode = lambda code: model.decode(layout.coords, code).clamp(0.0, 1.0)  # noqa: E731
    if not layout.patched:  # one item: the whole grid
        features = map_batches(decode, phi_hat).reshape(*grid, spec.out_dim)
        grid_coords = layout.coords.reshape(*grid, spec.in_dim)
    else:
        # Each batch of patches goes straight into the merged grid: no list of batches, no
        # concatenation, no separate merge copy (decoding at the size limit, docs/reliability.md).
        padded, blocks = merge_target(grid, item_shape, spec.out_dim)
        counts = blocks.shape[: len(grid)]

        def store(start: int, batch: torch.Tensor) -> None:
            index = torch.unravel_index(torch.arange(start, start + batch.shape[0]), counts)
            blocks[index] = batch.reshape(batch.shape[0], *item_shape, spec.out_dim)

        store_batches(decode, phi_hat, store)
        features = padded[tuple(slice(0, n) for n in grid)]
        smooth_seams_(features, item_shape).clamp_(0.0, 1.0)  # the patch grid's seams (patching.smooth_seams_)
        grid_coords = grid_coordinates(grid, *spec.coord_range)
    try:
        signal = Signal(features.contiguous(), grid_coords, spec.modality, header.meta)
    except InputError as exc:
        raise BitstreamError(f"{name}: decodes to an invalid signal ({exc})") from None
    return signal, header, level


def _reference_suffix(path: Path, modality: str) -> str:
    if get_modality(modality).directory:
        return ""
    writable = get_modality(modality).write_suffixes
    return path.suffix.lower() if path.suffix.lower() in writable else writable[0]


def as_written(signal: Signal, suffix: str) -> Signal:
    """What reading back ``signal`` written as ``suffix`` gives (the writer's own rounding)."""
    with tempfile.TemporaryDirectory(prefix="vcinr-") as tmp:
        path = Path(tmp) / f"decoded{suffix}"
        write_signal(signal, path)
        return read_signal(path, signal.modality)


# --- files ------------------------------------------------------------------------------------


def compress_file(input: str | Path, model_dir: str | Path, quality: str | None = None,
                  output: str | Path | None = None, progress: bool = False,
                  search: SearchSettings = SearchSettings()) -> CompressReport:
    """Compress ``input`` with the model in ``model_dir`` at ``quality`` into ``output`` (.vci).

    ``output`` defaults to ``input`` with the suffix ``.vci``.  The file is written atomically,
    only after the encoder has decoded its own bytes successfully.
    """
    started = time.perf_counter()
    input = Path(input)
    output = Path(output) if output is not None else input.with_suffix(".vci")
    if os.path.realpath(output) == os.path.realpath(input):  # Path.resolve raises RuntimeError on a symlink loop
        raise InputError(f"{output}: the output would overwrite the input")
    loaded = load_model(model_dir)
    level = load_level(loaded, quality)
    if not os.path.lexists(input):  # a symlink loop or a FIFO is refused by the reader, in one line
        raise InputError(f"{input}: no such file")
    signal = _read_input(input, loaded)
    data, estimated_bits, patches = encode_signal(signal, loaded, level, progress, input.name, search)
    decoded, header, _ = decode_bytes(data, loaded, input.name, level)
    written = as_written(decoded, _reference_suffix(input, signal.modality))
    metric, value = signal_quality(signal, written, loaded.spec.loss)
    atomic_write_bytes(output, data)
    _, payload = unpack(data)
    points = _points(signal.grid_shape)
    return CompressReport(
        input=input, output=output, quality=level.info.label, modality=signal.modality,
        grid_shape=signal.grid_shape, points=points, patches=patches, bytes=len(data), payload_bytes=len(payload),
        estimated_bits=estimated_bits, bpp=8.0 * len(data) / points,
        kbps=kbps(signal.meta, signal.grid_shape, len(data), signal.modality), metric=metric, value=value,
        seconds=time.perf_counter() - started,
    )


def decompress_file(vci: str | Path, model_dir: str | Path, output: str | Path,
                    progress: bool = False) -> DecompressReport:
    """Decode ``vci`` with the model in ``model_dir`` and write the signal to ``output``.

    Nothing is written unless decoding succeeds (the modality writers write atomically).
    """
    started = time.perf_counter()
    vci, output = Path(vci), Path(output)
    if vci.is_dir() or not os.path.lexists(vci):  # a FIFO or a symlink loop is refused by read_bounded
        raise InputError(f"{vci}: no such file")
    loaded = load_model(model_dir)
    writable = get_modality(loaded.spec.modality).write_suffixes
    if not get_modality(loaded.spec.modality).directory and output.suffix.lower() not in writable:
        raise InputError(f"{output}: cannot write {loaded.spec.modality} data as '{output.suffix or '(no suffix)'}' "
                         f"(writable: {', '.join(writable)})")
    data = read_bounded(vci, MAX_VCI_BYTES, "bitstream", BitstreamError)
    signal, header, level = decode_bytes(data, loaded, vci.name)
    write_signal(signal, output)
    points = _points(signal.grid_shape)
    return DecompressReport(
        input=vci, output=output, quality=level.info.label, modality=signal.modality, grid_shape=signal.grid_shape,
        points=points, bytes=len(data), bpp=8.0 * len(data) / points,
        kbps=kbps(signal.meta, signal.grid_shape, len(data), signal.modality), seconds=time.perf_counter() - started,
    )


__all__ = ["CompressReport", "DecompressReport", "as_written", "compress_file", "decode_bytes", "decode_latents",
           "decompress_file", "encode_signal", "signal_quality"]
