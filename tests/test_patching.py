"""Patching must be an exact, invertible bookkeeping step for any grid dimensionality."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vcinr.errors import ConfigError, InputError
from vcinr.modalities import read_signal
from vcinr.patching import merge_patches, patch_count, patch_grid, split_patches

DATA = Path(__file__).parents[1].parent / "shared" / "data"


def data_file(relative: str) -> Path:
    path = DATA / relative
    assert path.is_file(), f"test data missing: {path}"
    return path


@st.composite
def grids_and_patches(draw: st.DrawFn) -> tuple[torch.Tensor, tuple[int, ...]]:
    dims = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=dims, max_size=dims)))
    patch = tuple(draw(st.lists(st.integers(1, 5), min_size=dims, max_size=dims)))
    channels = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    grid = torch.rand(*shape, channels, generator=torch.Generator().manual_seed(seed))
    return grid, patch


@settings(max_examples=150, deadline=None)
@given(grids_and_patches())
def test_merge_inverts_split(case: tuple[torch.Tensor, tuple[int, ...]]) -> None:
    grid, patch = case
    patches = split_patches(grid, patch)
    assert patches.shape == (patch_count(grid.shape[:-1], patch), *patch, grid.shape[-1])
    assert torch.equal(merge_patches(patches, grid.shape[:-1], patch), grid)
    assert torch.equal(merge_patches(patches, grid.shape[:-1]), grid)


@pytest.mark.parametrize(
    ("shape", "patch"),
    [((12,), (4,)), ((13,), (4,)), ((6, 8), (3, 4)), ((7, 9), (3, 4)), ((4, 6, 8), (2, 3, 4)), ((5, 7, 9), (2, 3, 4))],
)
def test_round_trip_with_and_without_padding(shape: tuple[int, ...], patch: tuple[int, ...]) -> None:
    grid = torch.arange(torch.Size(shape).numel() * 2, dtype=torch.float32).reshape(*shape, 2)
    assert torch.equal(merge_patches(split_patches(grid, patch), shape, patch), grid)


def test_patches_are_row_major_blocks() -> None:
    grid = torch.arange(6 * 8, dtype=torch.float32).reshape(6, 8, 1)
    patches = split_patches(grid, (3, 4))
    assert patch_grid((6, 8), (3, 4)) == (2, 2)
    assert torch.equal(patches[0], grid[:3, :4])
    assert torch.equal(patches[1], grid[:3, 4:])
    assert torch.equal(patches[2], grid[3:, :4])
    assert torch.equal(patches[3], grid[3:, 4:])


def test_padding_replicates_the_edge() -> None:
    grid = torch.arange(5, dtype=torch.float32).reshape(5, 1)
    patches = split_patches(grid, (4,))
    assert patches[:, :, 0].tolist() == [[0, 1, 2, 3], [4, 4, 4, 4]]
    image = torch.arange(3 * 3, dtype=torch.float32).reshape(3, 3, 1)
    last = split_patches(image, (2, 2))[-1, :, :, 0]
    assert last.tolist() == [[8, 8], [8, 8]]


def test_kodak_image_gives_384_patches() -> None:
    image = read_signal(data_file("kodak/kodim01.png")).features
    assert image.shape == (512, 768, 3)
    patches = split_patches(image, (32, 32))
    assert patches.shape == (384, 32, 32, 3)
    assert torch.equal(merge_patches(patches, (512, 768)), image)


def test_three_seconds_of_audio_give_240_patches() -> None:
    assert patch_count((48000,), (200,)) == 240
    audio = read_signal(data_file("librispeech/test-other/1688/1688-142285-0003.flac")).features[:48000]
    assert audio.shape == (48000, 1)
    patches = split_patches(audio, (200,))
    assert patches.shape == (240, 200, 1)
    assert torch.equal(merge_patches(patches, (48000,)), audio)


@pytest.mark.parametrize(
    ("shape", "patch", "error"),
    [
        ((8, 8), (4,), ConfigError),  # dims mismatch
        ((8,), (0,), ConfigError),
        ((8,), (-2,), ConfigError),
        ((8,), (2.5,), ConfigError),
        ((8,), (), ConfigError),
    ],
)
def test_bad_patch_arguments(shape: tuple[int, ...], patch: tuple, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        split_patches(torch.zeros(*shape, 1), patch)
    assert "\n" not in str(info.value)


def test_merge_refuses_wrong_patch_count() -> None:
    patches = split_patches(torch.zeros(8, 8, 1), (4, 4))
    with pytest.raises(InputError, match="expected patches"):
        merge_patches(patches[:3], (8, 8))
    with pytest.raises(InputError, match="expected patches"):
        merge_patches(patches, (8, 8), (2, 2))


@pytest.mark.parametrize("grid, patch", [((7, 10), (3, 4)), ((8, 8), (4, 4)), ((5, 6, 7), (2, 3, 4)), ((9,), (4,))])
def test_merge_target_filled_batch_by_batch_equals_merge_patches(grid, patch):
    """The decoder writes batches of patches straight into the merged grid (issue 14): same result, no copies."""
    from vcinr.patching import merge_target

    signal = torch.randn(*grid, 2)
    patches = split_patches(signal, patch)
    padded, blocks = merge_target(grid, patch, 2)
    counts = blocks.shape[: len(grid)]
    for start in reversed(range(0, patches.shape[0], 3)):  # batches of 3, arriving in any order
        batch = patches[start : start + 3]
        blocks[torch.unravel_index(torch.arange(start, start + batch.shape[0]), counts)] = batch
    merged = padded[tuple(slice(0, n) for n in grid)]
    assert torch.equal(merged, merge_patches(patches, grid, patch))
    assert torch.equal(merged, signal)


def test_smooth_seams_leaves_smooth_content_and_halves_a_step_at_a_boundary():
    from vcinr.patching import smooth_seams_

    ramp = torch.linspace(0, 1, 12)
    grid = (ramp[:, None] + 2 * ramp[None, :])[..., None].repeat(1, 1, 3)  # (12, 12, 3), linear
    assert torch.allclose(smooth_seams_(grid.clone(), (4, 4)), grid, atol=1e-6)

    stepped = grid.clone()
    stepped[:, 8:] += 0.2  # a step exactly at the boundary between columns 7 | 8
    smoothed = smooth_seams_(stepped.clone(), (4, 4))
    slope = grid[0, 8, 0] - grid[0, 7, 0]
    jump_before = stepped[:, 8] - stepped[:, 7]
    jump_after = smoothed[:, 8] - smoothed[:, 7]
    assert torch.allclose(jump_after - slope, (jump_before - slope) / 2, atol=1e-6)
    untouched = [c for c in range(12) if c not in (3, 4, 7, 8)]
    assert torch.equal(smoothed[:, untouched], stepped[:, untouched])
    # one patch along an axis: nothing to smooth there
    assert torch.equal(smooth_seams_(stepped.clone(), (12, 12)), stepped)
