"""Where training's random draws come from: torch's global generator, or this thread's own.

Meta-training draws noise in three places: MSCN's hard-concrete gates, the stratified sample
offsets along rays, and the random subset of an item's points.  When the meta-step splits its
batch over threads (:func:`vcinr.meta.performance.meta_backward`), draws from the one global
generator would interleave in whatever order the threads happen to run, and a seeded run
would no longer repeat; each thread then draws from a generator of its own, seeded from the
step's seed.  Outside such a thread every draw uses the global generator, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_local = threading.local()


def generator() -> torch.Generator | None:
    """This thread's generator; ``None`` means torch's global one."""
    return getattr(_local, "generator", None)


@contextmanager
def thread_generator(gen: torch.Generator) -> Iterator[None]:
    """Make the calling thread's training draws come from ``gen``."""
    previous = generator()
    _local.generator = gen
    try:
        yield
    finally:
        _local.generator = previous
