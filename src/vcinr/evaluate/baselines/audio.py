"""Audio codecs (MP3, AAC, Opus through PyAV / FFmpeg), with resampling and encoder-delay checks."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from vcinr.errors import ConfigError, InputError, VcinrError
from vcinr.evaluate import metrics
from vcinr.evaluate.baselines.registry import (AUDIO_SPECS, CONTAINER_SUFFIX, CodecFailed, CodecRun, Item, Limits,
                                               Runner, av_pick, canonical_codec, require, setting_text, settings_for)
from vcinr.evaluate.points import RDPoint


def _check_audio(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        raise InputError(f"audio codecs need int16 samples, got {samples.dtype}")
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[0] == 0 or samples.shape[1] == 0:
        raise InputError(f"audio codecs need (T,) or (T, channels) samples, got shape {samples.shape}")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise InputError(f"the sample rate must be a positive integer, got {sample_rate!r}")
    return np.ascontiguousarray(samples)


def _coded_rate(rates: Sequence[int] | None, rate: int) -> int:
    """``rate`` if the codec takes it, else the nearest higher rate it takes (else its highest)."""
    if not rates or rate in rates:
        return rate
    higher = sorted(r for r in rates if r >= rate)
    return higher[0] if higher else max(rates)


# FFmpeg layouts without an LFE channel (an LFE channel would be coded band-limited).
_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "6.0", 7: "7.0", 8: "octagonal"}


def _layout(channels: int):
    import av

    if channels not in _LAYOUTS:
        raise CodecFailed(f"audio codecs here take 1 to 8 channels, the clip has {channels}")
    return av.AudioLayout(_LAYOUTS[channels])


def estimate_lag(reference: np.ndarray, test: np.ndarray, max_lag: int) -> int:
    """Lag (in samples) maximising the cross-correlation of ``test`` against ``reference``.

    Positive: ``test`` is late.  Uses the first channel and at most the first 480,000 samples;
    ``max_lag`` bounds the search.
    """
    a = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)[:, 0]
    b = np.asarray(test, dtype=np.float64).reshape(len(test), -1)[:, 0]
    n = min(len(a), len(b), 480_000)
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    if n == 0 or not a.any() or not b.any():
        return 0
    size = 1 << int(2 * n - 1).bit_length()
    cc = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)  # cc[k] = sum b[i+k] a[i]
    max_lag = max(0, min(int(max_lag), n - 1))
    lags = np.arange(-max_lag, max_lag + 1)
    return int(lags[np.argmax(cc[lags % size])])


def encode_audio(samples: np.ndarray, sample_rate: int, codec: str, kbps: float) -> tuple[bytes, np.ndarray, dict]:
    """Encode int16 audio at ``kbps`` into an in-memory container; returns (bytes, decoded, info)."""
    import av

    codec = canonical_codec(codec, "audio")
    require(codec)
    x = _check_audio(samples, sample_rate)
    frames_in, channels = x.shape
    if codec == "mp3" and channels > 2:
        raise CodecFailed(f"mp3 codes at most 2 channels, the clip has {channels}")
    if not kbps > 0:
        raise ConfigError(f"{codec}: bitrate must be positive, got {kbps} kbps")
    spec = AUDIO_SPECS[codec]
    encoder = av_pick(spec.encoders, "w")
    enc_codec = av.codec.Codec(encoder, "w")
    rate = _coded_rate(enc_codec.audio_rates, int(sample_rate))
    sample_format = enc_codec.audio_formats[0].name if enc_codec.audio_formats else "fltp"
    layout = _layout(channels)
    buffer = io.BytesIO()
    try:
        with av.open(buffer, "w", format=spec.container) as container:
            stream = container.add_stream(encoder, rate=rate)
            stream.bit_rate = int(round(kbps * 1000))
            stream.layout = layout
            stream.codec_context.format = sample_format
            frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate = int(sample_rate)
            frame.pts = 0
            frame.time_base = Fraction(1, int(sample_rate))
            resampler = av.AudioResampler(format=sample_format, layout=layout, rate=rate)
            for chunk in resampler.resample(frame) + resampler.resample(None):
                for packet in stream.encode(chunk):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        data = buffer.getvalue()
        decoded, info = _decode_audio(data, int(sample_rate), layout)
    except VcinrError:
        raise
    except Exception as exc:  # noqa: BLE001 - FFmpeg errors are reported per setting
        raise CodecFailed(f"{codec} at {kbps:g} kbps: {' '.join(str(exc).split()) or type(exc).__name__}") from None
    got = len(decoded)
    if got < frames_in:
        decoded = np.concatenate([decoded, np.zeros((frames_in - got, channels), np.int16)])
    decoded = decoded[:frames_in]
    info.update(
        encoder=encoder, container=spec.container, suffix=CONTAINER_SUFFIX[spec.container],
        coded_sample_rate=rate, decoded_samples=got, padded_samples=max(0, frames_in - got),
    )
    return data, decoded.reshape(np.shape(samples)), info


def _decode_audio(data: bytes, sample_rate: int, layout) -> tuple[np.ndarray, dict]:
    import av

    chunks = []
    channels = layout.nb_channels
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout=layout, rate=sample_rate)
        dropped = 0
        for frame in container.decode(stream):
            skip = 0
            if frame.pts is not None and frame.pts < 0 and frame.time_base is not None:
                # Priming samples the demuxer left in (negative timestamps): drop them.
                skip = min(frame.samples, int(round(-frame.pts * frame.time_base * frame.sample_rate)))
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1, channels))
            if skip:
                dropped += skip
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1, channels))
        decoder = stream.codec_context.name
        decoded_rate = stream.codec_context.sample_rate or sample_rate
    decoded = np.concatenate(chunks) if chunks else np.zeros((0, channels), np.int16)
    if dropped:
        decoded = decoded[int(round(dropped * sample_rate / decoded_rate)):]
    return decoded.astype(np.int16), {"decoder": decoder, "dropped_priming_samples": dropped}


def run_audio_codec(
    samples: np.ndarray, sample_rate: int, codec: str, settings: Iterable[float] | None = None
) -> list[CodecRun]:
    """Run an audio codec over a sweep of bitrates (kbps) on one int16 clip."""
    codec = canonical_codec(codec, "audio")
    require(codec)
    x = _check_audio(samples, sample_rate)
    seconds = x.shape[0] / float(sample_rate)
    runs = []
    for value in settings_for(codec, settings):
        data, rec, info = encode_audio(samples, sample_rate, codec, value)
        info["lag_samples"] = estimate_lag(x, rec.reshape(x.shape), max_lag=int(0.1 * sample_rate))
        point = RDPoint(
            modality="audio", codec=codec, setting=setting_text(codec, value), value=float(value),
            bytes=len(data), psnr=metrics.psnr(x, rec.reshape(x.shape)), kbps=metrics.kbps(len(data), seconds),
        )
        runs.append(CodecRun(point, data, rec, info))
    return runs


def _audio_items(path: Path, limits: Limits) -> list[Item]:
    from vcinr.modalities.audio import read_audio

    signal = read_audio(path, max_seconds=limits.max_seconds)
    return [Item(path.name, metrics.unit_to_int16(signal.features.numpy()), signal.meta["sample_rate"])]


AUDIO = Runner(_audio_items, lambda item, codec, settings, ms_ssim: run_audio_codec(item.data, item.sample_rate, codec,
                                                                                      settings))
