"""``make-scenes`` settings and options, apart from the renderer so that ``vcinr --help`` need not import torch."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SceneSettings:
    scenes: int = 40
    test_scenes: int = 4
    views: int = 30
    size: int = 64
    supersample: int = 2
    seed: int = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SceneSettings()
    parser.add_argument("out", type=Path, help="folder to create (train/ and test/ scene folders go inside)")
    parser.add_argument("--scenes", type=int, default=defaults.scenes, help="number of scenes (default: 40)")
    parser.add_argument("--test-scenes", type=int, default=defaults.test_scenes,
                        help="how many of them go to test/ (default: 4)")
    parser.add_argument("--views", type=int, default=defaults.views, help="views per scene (default: 30)")
    parser.add_argument("--size", type=int, default=defaults.size, help="view width and height in pixels (default: 64)")
    parser.add_argument("--supersample", type=int, default=defaults.supersample,
                        help="rays per pixel along each axis (default: 2)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: 0)")
    parser.add_argument("--mesh", type=Path, help="PLY mesh (default: ../shared/data's Stanford bunny, res3)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
