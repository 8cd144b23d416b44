"""Audio: WAV / FLAC / OGG (anything libsndfile reads), any channel count and sample rate.

Conventions (paper appendix A, LibriSpeech): grid axis ``(T,)``; coordinates in ``[-5, 5]``;
``out_dim`` = number of channels.

Features lie in ``[0, 1]``.  Integer PCM of ``B`` bits (8, 16, 24, 32) maps the full integer
range onto it: ``f = (x + 2**(B-1)) / (2**B - 1)``, so ``0`` is the most negative and ``1`` the
most positive code, and 8-, 16- and 24-bit files round-trip bit-exactly through float32
features (every code was checked; 32-bit PCM keeps float32 precision, about 24 bits).
Float files map ``[-1, 1]`` onto ``[0, 1]`` by ``f = (x + 1) / 2`` and are clipped to that
range when written.  PSNR on these features is
therefore PSNR of the waveform with a peak-to-peak range of 2 (full scale ``[-1, 1]``).
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import soundfile as sf
import torch

from vcinr.errors import ConfigError, InputError
from vcinr.modalities.base import Modality, SkipFile
from vcinr.modalities.common import check_suffix, reading, writing
from vcinr.modalities.datasets import check_counts, consecutive_clips
from vcinr.signal import MAX_POINTS, Signal, grid_coordinates

COORD_RANGE = (-5.0, 5.0)
_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
_PCM_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}


def read_audio(path: Path, max_seconds: float | None = None) -> Signal:
    """Decode ``path`` (only its first ``max_seconds`` if given) into a :class:`Signal`.

    ``max_seconds`` lets the data loader take the paper's first-3-seconds clips without
    decoding whole recordings.
    """
    path = Path(path)
    check_suffix(path, AudioModality.suffixes, "audio")
    with reading(path, "audio"), sf.SoundFile(path) as f:
        bits = _PCM_BITS.get(f.subtype)
        wanted = f.frames if max_seconds is None else min(round(max_seconds * f.samplerate), f.frames)
        if wanted * f.channels > MAX_POINTS:  # before decoding: a small FLAC of silence may hold hours
            raise InputError(f"{path}: {wanted} frames x {f.channels} channels is more than vcinr reads "
                             f"({MAX_POINTS} samples)")
        # libsndfile left-aligns every PCM width in int32; shifting back gives the B-bit codes.
        data = f.read(wanted, dtype="int32" if bits else "float64", always_2d=True)
        if len(data) < wanted:
            raise InputError(f"{path}: truncated audio file ({len(data)} of {wanted} samples)")
        meta = {
            "sample_rate": int(f.samplerate),
            "channels": int(f.channels),
            "subtype": f.subtype,
            "format": f.format,
        }
    if len(data) == 0:
        raise InputError(f"{path}: the audio file holds no samples")
    if bits:
        codes = (data >> (32 - bits)).astype(np.float64)
        features = (codes + 2.0 ** (bits - 1)) / (2.0**bits - 1.0)
    else:
        features = (data + 1.0) / 2.0
    coords = grid_coordinates((len(data),), *COORD_RANGE)
    return Signal(torch.from_numpy(features.astype(np.float32)), coords, "audio", meta)


def write_audio(signal: Signal, path: Path) -> None:
    """Write features back as samples; keeps the source subtype where the target format allows."""
    path = Path(path)
    check_suffix(path, AudioModality.write_suffixes, "audio")
    if signal.features.ndim != 2:
        raise InputError(f"audio needs features of shape (T, channels), got {tuple(signal.features.shape)}")
    rate = signal.meta.get("sample_rate")
    if not isinstance(rate, int) or rate <= 0:
        raise InputError("cannot write audio without a positive integer meta['sample_rate']")
    fmt = _FORMATS[path.suffix.lower()]
    subtype = signal.meta.get("subtype")
    if not isinstance(subtype, str) or not sf.check_format(fmt, subtype):  # meta may be forged
        subtype = sf.default_subtype(fmt)
    bits = _PCM_BITS.get(subtype)
    features = np.clip(signal.features.detach().cpu().numpy().astype(np.float64), 0.0, 1.0)
    if bits:
        codes = np.rint(features * (2.0**bits - 1.0) - 2.0 ** (bits - 1)).astype(np.int64)
        samples = (codes << (32 - bits)).astype(np.int32)
    else:
        samples = features * 2.0 - 1.0
    with writing(path) as tmp:
        sf.write(tmp, samples, rate, subtype=subtype, format=fmt)


class AudioModality(Modality):
    name = "audio"
    suffixes = tuple(_FORMATS)
    write_suffixes = tuple(_FORMATS)
    coord_range = COORD_RANGE
    loss = "mse"
    in_dim = 1
    snr_centre = 0.5  # a waveform in [-1, 1] is stored as (x + 1) / 2
    codecs = ("mp3", "aac", "opus")
    strong_codecs = ("opus",)  # for speech
    # the paper's first 3 s of each utterance; more consecutive clips of a file are more training data
    dataset_options = MappingProxyType({"clip_seconds": 3.0, "clips_per_file": 1})

    def duration(self, meta: dict, grid: tuple[int, ...]) -> float | None:
        rate = meta.get("sample_rate")
        if not isinstance(rate, (int, float)) or rate <= 0:
            return None
        return grid[0] / rate

    def read(self, path: Path) -> Signal:
        return read_audio(path)

    def check_dataset_options(self, options: dict[str, Any]) -> None:
        value = options["clip_seconds"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"data.options.clip_seconds must be a positive number, got {value!r}")
        check_counts(options, 1, "clips_per_file")

    def dataset_signals(self, path: Path, options: dict[str, Any]) -> list[Signal]:
        """Up to ``clips_per_file`` consecutive clips of ``clip_seconds`` from the file's start (as many as
        it holds); a file shorter than one clip is skipped (items must be equally long)."""
        seconds, clips = float(options["clip_seconds"]), options["clips_per_file"]
        signal = read_audio(path, max_seconds=seconds * clips)
        length = round(seconds * signal.meta["sample_rate"])
        clips = consecutive_clips(signal, length, grid_coordinates((length,), *COORD_RANGE))
        if not clips:
            raise SkipFile(f"shorter than clip_seconds={seconds:g}")
        return clips

    def write(self, signal: Signal, path: Path) -> None:
        write_audio(signal, path)
