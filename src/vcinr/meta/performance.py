"""Process-level settings that make the CPU path faster (see ``docs/performance.md``).

PyTorch's CPU allocator takes every tensor from ``malloc``.  glibc serves blocks above its
mmap threshold (128 KiB at first, adapting up to 32 MiB) with fresh ``mmap`` pages and gives
freed heap memory back to the system, so the multi-megabyte activations of a meta-step are
page-faulted in again on every allocation: about 30 000 page faults, 5 % of a CIFAR-shaped
meta-step on one core.  :func:`keep_freed_memory` raises both thresholds so freed blocks are
reused; the process then keeps its peak memory instead of returning it.  It is called by
long-running commands (training, the benchmarks), never on import.

:func:`meta_loss_function` optionally compiles the outer loss with ``torch.compile``.  The
inner-loop gradient is written out (:mod:`vcinr.inr.siren`), so the meta-gradient is one
ordinary backward pass, which ``torch.compile`` accepts (it refuses double backward).
Compiling is opt-in (``VCINR_COMPILE=1``): it costs about a minute of warm-up per process
(less with a warm inductor cache) and pays back only over long runs.  Where it fails (no C++
compiler, an unsupported construct) the run goes on eagerly with a warning.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import warnings
from collections.abc import Callable

import torch

from vcinr.meta.metasgd import MetaINR

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's upper limit on 64-bit systems
_TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Make glibc reuse freed blocks up to 32 MiB instead of unmapping them.

    Returns whether the setting took effect (``False`` off Linux/glibc, where it is a no-op).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def compile_requested() -> bool:
    """Whether ``VCINR_COMPILE`` asks for ``torch.compile`` (any value but empty or ``0``)."""
    return os.environ.get("VCINR_COMPILE", "") not in ("", "0")


def meta_loss_function(model: MetaINR, compile_: bool | None = None) -> Callable[..., torch.Tensor]:
    """``model.meta_loss``, compiled when ``compile_`` (default: :func:`compile_requested`)."""
    if compile_ is None:
        compile_ = compile_requested()
    if not compile_:
        return model.meta_loss
    compiled: list[Callable[..., torch.Tensor]] = [torch.compile(model.meta_loss)]

    def meta_loss(*args, **kwargs) -> torch.Tensor:
        if compiled[0] is model.meta_loss:
            return model.meta_loss(*args, **kwargs)
        try:
            return compiled[0](*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back to eager
            warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                          "running the meta-step eagerly", RuntimeWarning, stacklevel=2)
            compiled[0] = model.meta_loss
            return model.meta_loss(*args, **kwargs)

    return meta_loss
