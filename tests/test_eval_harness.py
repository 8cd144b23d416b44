"""`vcinr eval`: vcinr quality levels and standard codecs on the same files."""

import json
from pathlib import Path

import pytest

from vcinr.cli import main


def test_eval_on_cifar_sample_writes_points_plot_and_bd(tiny_cifar_codecs, data_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", str(data_dir / "cifar10" / "test.npz"), "--model", str(tiny_cifar_codecs), "--out", str(out),
                 "--max-files", "3", "--codecs", "jpeg", "jpeg2000", "webp", "--reference", "cifar10", "--quiet"])
    assert code == 0
    results = json.loads((out / "rd.json").read_text())
    points = results["points"]
    by_codec: dict[str, list] = {}
    for p in points:
        by_codec.setdefault(p["codec"], []).append(p)
    assert len(by_codec["vcinr-learned"]) + len(by_codec["vcinr-uniform"]) >= 4
    for codec in ("jpeg", "jpeg2000", "webp"):
        assert len(by_codec[codec]) >= 4, codec
    for p in points:  # rates come from the bytes each codec wrote: 32x32 images
        assert abs(p["bpp"] - 8 * p["bytes"] / 1024) < 1e-9
        assert p["num_files"] == 3
    assert results["settings"]["anchor"] == "jpeg" and "webp" in results["settings"]["bd"]
    png = out / "rd.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "BD vs anchor" in capsys.readouterr().out


def test_eval_refuses_inputs_of_another_modality(tiny_cifar_codecs, data_dir, tmp_path, capsys):
    flac = next((data_dir / "librispeech").rglob("*.flac"))
    assert main(["eval", str(flac), "--model", str(tiny_cifar_codecs), "--out", str(tmp_path / "e"), "--quiet"]) == 2
    assert "no image files" in capsys.readouterr().err


def test_eval_of_speech_gives_snr_beside_psnr(tmp_path):
    """Audio PSNR on the peak-to-peak scale reads ~30 dB above the waveform's SNR: eval reports both."""
    from vcinr.bundled import resolve_model
    from vcinr.evaluate.harness import format_table, run_eval
    from vcinr.evaluate.metrics import audio_power_db
    from vcinr.modalities import read_signal

    clip = Path(__file__).parents[1] / "src/vcinr/samples/demo/533-1066-0001-4s.flac"
    outcome = run_eval(resolve_model("audio"), [clip], tmp_path / "eval", codecs=["opus"], qualities=["1"],
                       progress=False, effort=0)
    power = audio_power_db(read_signal(clip, "audio").features.numpy())
    assert outcome.snr_offset == pytest.approx(power) and power < -15
    table = format_table(outcome).splitlines()
    assert table[0].split()[-1] == "SNR"
    vcinr_row = next(line for line in table if line.startswith("vcinr"))
    assert float(vcinr_row.split()[-1]) == pytest.approx(float(vcinr_row.split()[-2]) + power, abs=0.01)
    assert json.loads((tmp_path / "eval" / "rd.json").read_text())["settings"]["snr_offset_db"] == pytest.approx(power)


def test_eval_with_no_codec_names_runs_the_model_alone(tiny_cifar_codecs, data_dir, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", str(data_dir / "cifar10" / "test.npz"), "--model", str(tiny_cifar_codecs), "--out", str(out),
                 "--max-files", "2", "--quality", "1", "--codecs", "--quiet"]) == 0
    results = json.loads((out / "rd.json").read_text())
    assert {p["codec"] for p in results["points"]} == {"vcinr-learned"}
    assert results["settings"]["bd"] == {}


def test_eval_refuses_an_unknown_codec_before_any_model_work(tiny_cifar_codecs, data_dir, tmp_path, capsys,
                                                            monkeypatch):
    import vcinr.evaluate.harness as harness

    def never(*args, **kwargs):
        raise AssertionError("the model's points were computed before the codec names were checked")

    monkeypatch.setattr(harness, "vcinr_points", never)
    assert main(["eval", str(data_dir / "cifar10" / "test.npz"), "--model", str(tiny_cifar_codecs),
                 "--out", str(tmp_path / "e"), "--codecs", "bpg", "--quiet"]) == 2
    assert "unknown codec 'bpg'" in capsys.readouterr().err
