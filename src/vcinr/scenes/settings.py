"""``make-scenes`` settings, apart from the renderer so that ``vcinr --help`` (its defaults) need not import torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SceneSettings:
    scenes: int = 40
    test_scenes: int = 4
    views: int = 30
    size: int = 64
    supersample: int = 2
    seed: int = 0
