"""Standard codecs on real data: exact bytes, correct rates, monotone RD curves, aligned audio."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from vcinr.errors import ConfigError, InputError
from vcinr.evaluate import baselines as B
from vcinr.evaluate import metrics
from vcinr.evaluate.points import RDPoint
from vcinr.evaluate.results import load_results, write_results

FLAC = "librispeech/test-other/1688/1688-142285-0000.flac"


def _check_curve(runs, num_points, *, min_distinct=4):
    """Exact bytes and rates; smaller files at lower settings; PSNR rising with rate."""
    codec = runs[0].point.codec
    for r in runs:
        assert r.point.bytes == len(r.data) > 0
        if r.point.bpp is not None:
            assert r.point.bpp == pytest.approx(8 * len(r.data) / num_points, rel=1e-12)
        assert math.isfinite(r.point.psnr)
    ordered = sorted(runs, key=lambda r: r.point.value * B.SETTING_DIRECTION.get(codec, 1))  # low → high quality
    sizes = [r.point.bytes for r in ordered]
    assert sizes == sorted(sizes), f"{codec}: file size does not grow with the setting: {sizes}"
    assert len(set(sizes)) >= min_distinct, f"{codec}: only {len(set(sizes))} distinct rates"
    by_rate = sorted(runs, key=lambda r: (r.point.bytes, r.point.psnr))
    psnrs = [r.point.psnr for r in by_rate]
    assert psnrs == sorted(psnrs), f"{codec}: PSNR does not grow with rate: {psnrs}"
    assert psnrs[-1] > psnrs[0] + 3


@pytest.fixture(scope="module")
def kodak_crop(data_dir):
    with Image.open(data_dir / "kodak" / "kodim01.png") as image:
        return np.asarray(image.convert("RGB"))[:256, :256].copy()


@pytest.fixture(scope="module")
def cifar(data_dir):
    return np.load(data_dir / "cifar10" / "test.npz")["images"][:3]


IMAGE_SWEEPS = {"avif": [0, 30, 60, 80, 95]}  # AVIF is the slow one; the others use the defaults


@pytest.mark.parametrize("codec", B.IMAGE_CODECS)
def test_image_codecs_on_kodak(kodak_crop, codec):
    if B.codec_unavailable_reason(codec):
        pytest.skip(B.codec_unavailable_reason(codec))
    runs = B.run_image_codec(kodak_crop, codec, IMAGE_SWEEPS.get(codec), with_ms_ssim=False)
    _check_curve(runs, 256 * 256)
    for r in runs:
        assert r.reconstruction.shape == kodak_crop.shape and r.reconstruction.dtype == np.uint8
        # the stored bytes are a real file of that format: it decodes to the same reconstruction
        with Image.open(__import__("io").BytesIO(r.data)) as again:
            assert np.array_equal(np.asarray(again.convert("RGB")), r.reconstruction)
        assert r.point.psnr == pytest.approx(metrics.psnr(kodak_crop, r.reconstruction))
    rates = [r.point.bpp for r in runs]
    if codec in ("jpeg", "jpeg2000", "webp", "avif"):
        assert min(rates) < 0.25  # the sweep reaches the low end
    if codec == "jpeg2000":
        assert max(rates) > 6  # and the high end
        # the rate control hits the requested bpp on an image this size
        for r in runs:
            if r.point.value <= 4:
                assert r.point.bpp == pytest.approx(r.point.value, rel=0.05)


def test_ms_ssim_on_kodak_points(kodak_crop):
    runs = B.run_image_codec(kodak_crop, "jpeg", [10, 90])
    low, high = (r.point for r in runs)
    assert low.ms_ssim_kind == high.ms_ssim_kind == "ms-ssim"
    assert 0.5 < low.ms_ssim < high.ms_ssim < 1.0


@pytest.mark.parametrize("codec", B.IMAGE_CODECS)
def test_image_codecs_on_cifar(cifar, codec):
    if B.codec_unavailable_reason(codec):
        pytest.skip(B.codec_unavailable_reason(codec))
    per_image = []
    for image in cifar:
        runs = B.run_image_codec(image, codec, IMAGE_SWEEPS.get(codec), with_ms_ssim=codec == "jpeg")
        _check_curve(runs, 32 * 32)
        per_image.append([r.point for r in runs])
        if codec == "jpeg":
            assert {r.point.ms_ssim_kind for r in runs} == {"ms-ssim-2"}  # 32x32: two scales, labelled
    averaged = B.average_points(per_image)
    assert len(averaged) == len(per_image[0]) and all(p.num_files == 3 for p in averaged)
    first = averaged[0]
    assert first.bpp == pytest.approx(np.mean([pts[0].bpp for pts in per_image]))
    assert first.psnr == pytest.approx(np.mean([pts[0].psnr for pts in per_image]))


def test_sphere_field_through_jpeg(data_dir):
    fields = np.load(data_dir / "era5" / "samples.npz")["temperature_normalized"]
    field = fields[0]
    runs = B.run_sphere_codec(field, "jpeg")
    _check_curve(runs, 46 * 90)
    for r in runs:
        assert r.reconstruction.shape == (46, 90) and r.reconstruction.dtype == np.float32
        assert r.point.modality == "sphere" and r.point.ms_ssim is None
        assert r.point.psnr == pytest.approx(metrics.psnr(field.astype(np.float64), r.reconstruction.astype(np.float64)))
    # PSNR is against the float field, so it cannot beat the 8-bit quantisation of the grid
    ceiling = metrics.psnr(field.astype(np.float64), B.sphere_to_uint8(field) / 255.0)
    assert 55 < ceiling < 62
    assert max(r.point.psnr for r in runs) <= ceiling + 0.5


@pytest.fixture(scope="module")
def speech(data_dir):
    samples, rate = sf.read(data_dir / FLAC, dtype="int16")
    assert rate == 16000
    return samples[: 3 * rate], rate


def _xcorr_lag(reference, test, max_lag):
    """Independent check: direct cross-correlation over ±max_lag samples."""
    a = reference.astype(np.float64) - reference.mean()
    b = test.astype(np.float64) - test.mean()
    n = len(a)
    scores = [np.dot(a[max(0, -k): n - max(0, k)], b[max(0, k): n - max(0, -k)]) for k in range(-max_lag, max_lag + 1)]
    return int(np.argmax(scores)) - max_lag


@pytest.mark.parametrize("codec", B.AUDIO_CODECS)
def test_audio_codecs_on_librispeech(speech, codec):
    if B.codec_unavailable_reason(codec):
        pytest.skip(B.codec_unavailable_reason(codec))
    samples, rate = speech
    runs = B.run_audio_codec(samples, rate, codec)
    for r in runs:
        assert r.point.bytes == len(r.data)
        assert r.point.kbps == pytest.approx(8 * len(r.data) / 3.0 / 1000)
        assert r.reconstruction.shape == samples.shape and r.reconstruction.dtype == np.int16
        assert r.info["padded_samples"] == 0  # the decoder gave at least the whole clip
        assert r.point.psnr == pytest.approx(metrics.psnr(samples, r.reconstruction))
    kbps = sorted(r.point.kbps for r in runs)
    assert kbps[0] < 16 and kbps[-1] > 64
    best = max(runs, key=lambda r: r.point.kbps)
    assert best.point.psnr > 40  # far above the 20 dB floor of a misaligned decode
    psnrs = [r.point.psnr for r in sorted(runs, key=lambda r: r.point.kbps)]
    assert psnrs[-1] > psnrs[0] + 5
    # alignment: priming samples removed, no offset left
    for r in runs:
        if r.point.value >= 24:
            assert _xcorr_lag(samples, r.reconstruction, 200) == 0
            assert r.info["lag_samples"] == 0
        assert abs(r.info["lag_samples"]) <= 4
    # a one-sample shift of the reconstruction costs PSNR: the alignment is what makes PSNR meaningful
    shifted = np.concatenate([best.reconstruction[:1], best.reconstruction[:-1]])
    assert metrics.psnr(samples, shifted) < best.point.psnr - 1


def test_audio_resampled_stereo_round_trip(speech):
    from scipy.signal import resample_poly

    samples, _ = speech
    up = resample_poly(samples[:16000].astype(np.float64), 441, 160)  # 1 s at 44.1 kHz
    stereo = np.stack([up, 0.5 * np.roll(up, 50)], axis=1).clip(-32768, 32767).astype(np.int16)
    (run,) = B.run_audio_codec(stereo, 44100, "opus", [96])  # Opus codes 48 kHz: resampled and back
    assert run.info["coded_sample_rate"] == 48000
    assert run.reconstruction.shape == stereo.shape
    assert run.info["lag_samples"] == 0 and run.point.psnr > 35


def test_estimate_lag_finds_a_known_delay():
    rng = np.random.default_rng(0)
    x = rng.normal(size=4000)
    delayed = np.concatenate([np.zeros(37), x[:-37]])
    assert B.estimate_lag(x, delayed, 100) == 37
    assert B.estimate_lag(delayed, x, 100) == -37


def test_mp3_refuses_more_than_two_channels_cleanly():
    clip = np.zeros((1600, 3), np.int16)
    with pytest.raises(B.CodecFailed, match="at most 2 channels"):
        B.encode_audio(clip, 16000, "mp3", 32)


@pytest.fixture(scope="module")
def clip(data_dir):
    from vcinr.modalities.video import read_video

    signal = read_video(data_dir / "video" / "realshort.mp4", max_frames=8, size=(64, 80))
    return np.rint(signal.features.numpy() * 255).astype(np.uint8), signal.meta["fps"]


VIDEO_SWEEPS = {"h264": [45, 35, 25, 15], "hevc": [45, 35, 25, 15], "av1": [63, 50, 35, 20]}


@pytest.mark.parametrize("codec", B.VIDEO_CODECS)
def test_video_codecs_on_a_real_clip(clip, codec):
    if B.codec_unavailable_reason(codec):
        pytest.skip(B.codec_unavailable_reason(codec))
    frames, fps = clip
    assert frames.shape == (8, 64, 80, 3)
    runs = B.run_video_codec(frames, codec, VIDEO_SWEEPS[codec], fps=fps)
    _check_curve(runs, 8 * 64 * 80)
    for r in runs:
        assert r.reconstruction.shape == frames.shape
        assert r.data[4:8] == b"ftyp"  # a complete MP4 file
    assert max(r.point.psnr for r in runs) > 30


def test_video_odd_size_is_padded_and_cropped(clip):
    frames = clip[0][:2, :63, :77]
    (run,) = B.run_video_codec(frames, "h264", [20])
    assert run.reconstruction.shape == frames.shape and run.info["coded_size"] == [78, 64]
    assert run.point.bpp == pytest.approx(8 * len(run.data) / (2 * 63 * 77)) and run.point.psnr > 28


def test_evaluate_baselines_averages_files_and_writes_results(tmp_path, cifar):
    files = []
    for i, image in enumerate(cifar[:2]):
        Image.fromarray(image).save(tmp_path / f"c{i}.png")
        files.append(tmp_path / f"c{i}.png")
    settings = {"jpeg": [20, 80], "webp": [20, 80]}
    points = B.evaluate_baselines(files, "image", ["jpg", "webp"], settings=settings)
    assert [(p.codec, p.setting) for p in points] == [
        ("jpeg", "quality=20"), ("jpeg", "quality=80"), ("webp", "quality=20"), ("webp", "quality=80")]
    single = [B.run_image_codec(img, "jpeg", [20])[0].point for img in cifar[:2]]
    assert points[0].num_files == 2
    assert points[0].bytes == pytest.approx(np.mean([p.bytes for p in single]))
    assert points[0].bpp == pytest.approx(np.mean([p.bpp for p in single]))
    assert points[0].psnr == pytest.approx(np.mean([p.psnr for p in single]))
    assert points[0].ms_ssim_kind == "ms-ssim-2"

    lossless = RDPoint("image", "jpeg", "quality=100", 100, 10.0, math.inf, bpp=1.0)
    out = write_results(tmp_path / "results.json", [*points, lossless], {"dataset": "cifar10", "files": files})
    document = json.loads(out.read_text())
    assert document["settings"]["files"] == [str(f) for f in files]
    versions = document["codec_versions"]
    assert versions["pillow"] and versions["pyav"] and "jpg" in versions["pillow_features"]
    assert versions["av_codecs"]["h264"]["encoder"] == "libx264"
    assert document["points"][-1]["psnr"] is None and document["points"][-1]["lossless"] is True
    again, rest = load_results(out)
    assert again[:-1] == list(points) and again[-1].psnr == math.inf
    assert rest["settings"]["dataset"] == "cifar10"


def test_missing_codec_is_skipped_by_name(tmp_path, cifar, monkeypatch):
    Image.fromarray(cifar[0]).save(tmp_path / "c.png")
    real = B.codec_unavailable_reason

    def no_avif(codec):
        return "avif: Pillow was built without avif support" if codec == "avif" else real(codec)

    monkeypatch.setattr(B.registry, "codec_unavailable_reason", no_avif)
    with pytest.warns(UserWarning, match="skipping avif"):
        points = B.evaluate_baselines([tmp_path / "c.png"], "image", ["avif", "jpeg"], settings={"jpeg": [50]},
                                      ms_ssim=False)
    assert [p.codec for p in points] == ["jpeg"]
    assert points.skipped == {"avif": "avif: Pillow was built without avif support"}
    with pytest.raises(B.CodecUnavailable, match="without avif"):
        B.run_image_codec(cifar[0], "avif")
    write_results(tmp_path / "r.json", points, {})
    assert json.loads((tmp_path / "r.json").read_text())["skipped"]["avif"].startswith("avif:")


def test_failing_setting_is_skipped_not_fatal(tmp_path, speech):
    samples, rate = speech
    three = np.stack([samples[:8000]] * 3, axis=1)
    sf.write(tmp_path / "three.wav", three, rate, subtype="PCM_16")
    points = B.evaluate_baselines([tmp_path / "three.wav"], "audio", ["mp3", "aac"], settings={"mp3": [32], "aac": [64]})
    assert [p.codec for p in points] == ["aac"] and points[0].kbps > 0
    assert "at most 2 channels" in points.skipped["mp3 kbps=32"]


def test_configuration_errors():
    with pytest.raises(ConfigError, match="unknown codec 'bpg'"):
        B.evaluate_baselines([], "image", ["bpg"])
    with pytest.raises(ConfigError, match="no standard codecs for modality 'voxels'"):
        B.evaluate_baselines([], "voxels")
    with pytest.raises(ConfigError, match="not a number"):
        B.evaluate_baselines([], "image", ["jpeg"], settings={"jpeg": ["high"]})
    with pytest.raises(InputError, match="no files"):
        B.evaluate_baselines([], "image", ["jpeg"])
    with pytest.raises(InputError, match="uint8"):
        B.run_image_codec(np.zeros((8, 8, 3), np.float32), "jpeg")
    assert B.canonical_codec("x265") == "hevc" and B.canonical_codec("J2K") == "jpeg2000"
    assert set(B.available_codecs("audio")) == {"mp3", "aac", "opus"}


def test_nearest_point_picks_similar_rate():
    pts = [RDPoint("image", "jpeg", f"quality={q}", q, 0, 30, bpp=b) for q, b in ((10, 0.3), (50, 1.0), (90, 3.0))]
    assert B.nearest_point(pts, 0.9).value == 50
    assert B.nearest_point(pts, 2.0, codec="jpeg").value == 90
    assert B.nearest_point(pts, 1.0, codec="webp") is None
