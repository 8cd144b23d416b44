"""vcinr.storage: the one atomic writer every file goes through (issue 15, point 3)."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file

from vcinr.storage import atomic_path, atomic_save_tensors, atomic_write_bytes


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path  # libraries choose the format by the suffix
        tmp.write_bytes(b"half")
        raise RuntimeError("encoder failed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_a_folder_replaces_only_an_empty_one(tmp_path):
    target = tmp_path / "scene"
    target.mkdir()
    with atomic_path(target, directory=True) as tmp:
        (tmp / "view.txt").write_text("1")
    assert (target / "view.txt").read_text() == "1"
    with pytest.raises(OSError), atomic_path(target, directory=True) as tmp:
        (tmp / "other.txt").write_text("2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene"] and (target / "view.txt").is_file()


def test_files_respect_the_umask_whoever_creates_them(tmp_path):
    previous = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "codecs" / "a.json", b"{}")  # missing folders are created
        atomic_save_tensors({"x": torch.arange(3)}, tmp_path / "w.safetensors")  # safetensors writes 0600 itself
    finally:
        os.umask(previous)
    assert (tmp_path / "codecs" / "a.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o640
    assert torch.equal(load_file(tmp_path / "w.safetensors")["x"], torch.arange(3))
