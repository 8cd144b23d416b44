"""The paper's published VC-INR curves: present, labelled as published, copied verbatim."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vcinr.errors import ConfigError
from vcinr.evaluate.reference import (
    REFERENCE_FILE,
    load_reference_curves,
    missing_reference_curves,
    reference_datasets,
)

PAPER = Path(__file__).resolve().parents[2] / "shared" / "papers" / "vcinr-paper-icml2023.txt"
EXPECTED = {"cifar10": (11, "bpp"), "kodak": (9, "bpp"), "era5": (8, "bpp"), "librispeech": (10, "kbps"),
            "ucf101": (10, "bpp")}


def _numbers(line: str) -> list[float]:
    return [float(x) for x in re.search(r"\[(.*)\]", line).group(1).split(",")]


def test_every_dataset_has_a_published_curve():
    assert sorted(reference_datasets()) == sorted(EXPECTED)
    for dataset, (count, unit) in EXPECTED.items():
        (curve,) = load_reference_curves(dataset)
        assert curve.kind == "published" and curve.method == "VC-INR"
        assert "ICML 2023" in curve.source and "appendix B" in curve.source
        assert len(curve.rate) == len(curve.psnr) == count
        assert curve.rate_unit == unit
        # the parsed numbers are the numbers of the verbatim lines
        bpp_line, psnr_line = curve.notes["paper_text"]
        assert list(curve.rate) == _numbers(bpp_line) and list(curve.psnr) == _numbers(psnr_line)


def test_known_values_spot_check():
    kodak = load_reference_curves("Kodak")[0]
    assert kodak.rate[0] == 0.08 and kodak.psnr[0] == 26.86 and kodak.psnr[-1] == 42.24
    assert load_reference_curves("ERA-5")[0].rate[3] == 0.00758
    assert load_reference_curves("UCF-101")[0].psnr[-1] == 56.22
    assert load_reference_curves("cifar-10", method="vc-inr")[0].rate[-1] == 12.52


@pytest.mark.skipif(not PAPER.is_file(), reason="paper text not available")
def test_lines_are_verbatim_from_the_paper():
    text = PAPER.read_text(encoding="utf-8")
    appendix = text[text.index("B. Numerical Results"):text.index("C. Meta-Learning")]
    for dataset in EXPECTED:
        for line in load_reference_curves(dataset)[0].notes["paper_text"]:
            assert line in appendix


def test_unknown_dataset_and_method():
    with pytest.raises(ConfigError, match="known: cifar10"):
        load_reference_curves("imagenet")
    with pytest.raises(ConfigError):
        load_reference_curves("kodak", method="COIN++")


def test_coinpp_slot_is_documented_not_invented():
    document = json.loads(REFERENCE_FILE.read_text(encoding="utf-8"))
    assert document["kind"] == "published" and document["source"]
    slots = missing_reference_curves()
    (coinpp,) = [s for s in slots if s["method"] == "COIN++"]
    assert coinpp["rate"] is None and coinpp["psnr"] is None and coinpp["how_to_add"]
    assert all(c["method"] != "COIN++" for c in document["curves"])
