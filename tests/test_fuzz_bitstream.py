"""Hostile .vci files: mutated and truncated real bitstreams end in a BitstreamError or a valid decode.

The mutator and checker are those of the long fuzz run (``python -m benchmarks.fuzz_bitstream``,
see docs/reliability.md); here hypothesis drives them for a few thousand cases over real
streams of an unpatched and a patched model, at a learned and a uniform quality level.  Half
of the mutations recompute the CRC, as a forger would, so the checks behind it are reached.
"""

import random
import shutil

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from benchmarks.fuzz_bitstream import Seed, check, forge_crc, mutate
from vcinr.codec import entropy
from vcinr.codec.bitstream import pack, unpack
from vcinr.codec.fit import FitSettings, fit_codecs
from vcinr.errors import BitstreamError
from vcinr.meta.model import load_model
from vcinr.pipeline import compress_file, decode_bytes

CASES = 2500


@pytest.fixture(scope="module")
def seeds(tiny_cifar_codecs, tiny_model_factory, tiny_config, data_dir, tmp_path_factory) -> list[Seed]:
    folder = tmp_path_factory.mktemp("fuzz-seeds")
    # the patched model of test_pipeline.py (same name and config: trained once per session)
    trained = tiny_model_factory("cifar-patch16", tiny_config("cifar10", data_dir / "cifar10", patch=[16, 16], steps=60))
    patched = folder / "patched"
    shutil.copytree(trained, patched)
    fit_codecs(patched, settings=FitSettings(lambdas=(0.01,), bits=(6,), steps=30, lr=1e-2, batch_size=8,
                                             max_items=64, eval_items=16), progress=False)
    Image.fromarray(np.load(data_dir / "cifar10" / "test.npz")["images"][5]).save(folder / "cifar.png")
    with Image.open(data_dir / "kodak" / "kodim01.png") as img:
        img.crop((300, 200, 356, 240)).save(folder / "crop.png")
    result = []
    for model, image in ((tiny_cifar_codecs, "cifar.png"), (patched, "crop.png")):
        loaded = load_model(model)
        for quality in ("1", "u6"):
            vci = folder / f"{model.name}-{quality}.vci"
            compress_file(folder / image, model, quality, vci)
            result.append(Seed(vci.name, vci.read_bytes(), loaded))
    return result


@settings(max_examples=CASES, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False), which=st.integers(0, 3))
def test_mutated_real_bitstreams_are_refused_or_decode_validly(seeds, rng, which):
    seed = seeds[which]
    assert check(mutate(seed.data, rng), seed.loaded) in ("refused", "decoded")


def test_the_fuzzer_reaches_past_the_crc(seeds):
    """The mutations are not all stopped by the CRC: forged ones reach the parser and the decoder."""
    rng = random.Random(1)
    outcomes = {"refused": 0, "decoded": 0}
    messages = set()
    for i in range(400):
        seed = seeds[i % len(seeds)]
        data = mutate(seed.data, rng)
        try:
            decode_bytes(data, seed.loaded)
            outcomes["decoded"] += 1
        except BitstreamError as exc:
            outcomes["refused"] += 1
            messages.add(str(exc).split(":")[0].split(" (")[0])
    assert outcomes["decoded"] > 0 and outcomes["refused"] > 0
    assert len(messages) >= 5, messages  # many different checks fire, not just the CRC


def test_every_truncation_of_real_streams_is_refused(seeds):
    for seed in seeds:
        for n in range(len(seed.data)):
            for data in (seed.data[:n], forge_crc(seed.data[:n])):
                with pytest.raises(BitstreamError):
                    decode_bytes(data, seed.loaded)


def test_forged_payloads_of_escape_codes_decode_or_are_refused(seeds):
    """0xFF words decode as escapes with long bypass codes: garbage symbols or a one-line refusal, no crash.

    (CompressAI's rANS decoder read past its buffer on such input; constriction's is bounds-checked.)
    """
    tables = entropy.tables_from_counts(torch.tensor([[50.0, 30.0, 10.0, 5.0]]))
    for payload in (b"\xff" * 4_000_000, b"\xff" * 4, b"", bytes(range(256)) * 8):
        try:
            assert entropy.decode(payload, 1000, tables).shape == (1000, 1)
        except BitstreamError as exc:
            assert "\n" not in str(exc)
    with pytest.raises(BitstreamError, match="32-bit words"):
        entropy.decode(b"\xff" * 5, 1, tables)
    for seed in seeds:  # the same through the container: garbage symbols, refused or decoded, no crash
        header, _ = unpack(seed.data)
        assert check(pack(header, b"\xff" * 200_000), seed.loaded) in ("refused", "decoded")


def test_headers_claiming_huge_grids_are_refused_before_allocating(seeds):
    from dataclasses import replace

    from vcinr.codec.bitstream import fingerprint_prefix

    patched = seeds[2]
    header, payload = unpack(patched.data)
    assert header.patch_count > 1
    for grid in ((2**16, 2**16), (2**31, 1), (1, 2**32 - 1)):
        count = int(np.prod([-(-g // p) for g, p in zip(grid, header.patch_shape)]))
        forged = replace(header, grid_shape=grid, patch_count=min(count, 2**32 - 1),
                         model_fingerprint=fingerprint_prefix(patched.loaded.fingerprint))
        with pytest.raises(BitstreamError, match="larger than this decoder allows|cannot fit"):
            decode_bytes(pack(forged, payload), patched.loaded)


def test_control_characters_in_the_header_never_reach_messages(seeds):
    """Found by atheris: a forged modality name with a newline made a two-line error message."""
    seed = seeds[0]
    data = seed.data.replace(b"image", b"im!\ne", 1)
    with pytest.raises(BitstreamError, match="modality name") as info:
        decode_bytes(forge_crc(data), seed.loaded)
    assert "\n" not in str(info.value)


def test_cli_errors_escape_control_characters(tiny_cifar_codecs, tmp_path, vcinr_main, capsys):
    bad = tmp_path / "evil\n\x1b[31mname.png"
    bad.write_bytes(b"not an image")
    argv = ["compress", str(bad), "--model", str(tiny_cifar_codecs), "-o", str(tmp_path / "o.vci"), "--quiet"]
    assert vcinr_main(argv) == 2
    err = capsys.readouterr().err
    assert "evil\\n\\x1b[31mname.png: not a readable image" in err
    assert err.count("\n") == 1 and "\x1b" not in err and "\\n" in err
