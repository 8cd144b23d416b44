"""Issue 15, point 7: refactoring changes nothing for users.

``tests/data/pinned/`` holds a 48×32 crop of Kodak kodim19 (held out from the bundled image
model's training) and the ``.vci`` files ``vcinr compress`` made of it with the bundled
``image`` model before the package was reorganised: learned quality 2 with plain rounding
(``--effort 0``, the only encoder setting that skips the search) and uniform ``u6``.
``expected.json`` holds the SHA-256 of what ``vcinr decompress`` wrote for each.

A pinned file that no longer decodes to the same bytes, or a fresh encode that no longer
gives the pinned bytes, means the format, the decoder or the encoder changed.  If that is
on purpose (a new format, re-bundled models), re-pin in the same change and say so:

    .venv/bin/python tests/test_pinned_bitstream.py --repin
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

PINNED = Path(__file__).parent / "data" / "pinned"
SOURCE = PINNED / "kodim19-crop.png"
CASES = {"kodim19-crop-q2.vci": ["-q", "2", "--effort", "0"], "kodim19-crop-u6.vci": ["-q", "u6"]}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(CASES))
def test_pinned_bitstream_decodes_to_the_pinned_bytes(vcinr_main, tmp_path, name):
    out = tmp_path / "decoded.png"
    assert vcinr_main(["decompress", str(PINNED / name), "-o", str(out), "--quiet"]) == 0
    assert _sha256(out) == json.loads((PINNED / "expected.json").read_text())[name]


@pytest.mark.parametrize("name", sorted(CASES))
def test_fresh_encode_gives_the_pinned_bytes(vcinr_main, tmp_path, name):
    out = tmp_path / name
    assert vcinr_main(["compress", str(SOURCE), "-o", str(out), "--quiet", *CASES[name]]) == 0
    assert out.read_bytes() == (PINNED / name).read_bytes()


def _repin() -> None:
    """Re-make the pinned files with this checkout's ``vcinr`` (see the module docstring)."""
    import tempfile

    from vcinr.cli import main

    expected = {}
    for name, flags in CASES.items():
        assert main(["compress", str(SOURCE), "-o", str(PINNED / name), "--quiet", *flags]) == 0
        with tempfile.TemporaryDirectory() as tmp:
            decoded = Path(tmp) / "decoded.png"
            assert main(["decompress", str(PINNED / name), "-o", str(decoded), "--quiet"]) == 0
            expected[name] = _sha256(decoded)
    (PINNED / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__" and sys.argv[1:] == ["--repin"]:
    _repin()
