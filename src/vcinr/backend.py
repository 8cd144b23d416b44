"""The CPU speed paths, each beside the plain reference path it must agree with (docs/performance.md).

The numerical code asks a :class:`Backend` for its sines and shared-weight products instead of
choosing kernels itself, so a trick can be switched off for one network (``Siren(...,
backend=REFERENCE)``) to check or debug it, without touching the rest of the process.  The
tricks, measured on the project's 2-core machines:

* **sines through NumPy** (:meth:`Backend.sine`): NumPy's SIMD sine and cosine run about twice
  as fast as torch's on one thread at the same accuracy (within 2·10⁻⁷ of the exact value, as
  torch's; tests/test_inr.py), written into torch's memory through a NumPy view;
* **products on oneDNN** (:meth:`Backend.linear`): for a SIREN's K = width products oneDNN's
  JIT kernels run 15–40 % faster than PyTorch's default CPU matmul (MKL); they are reached
  through a private op, ``torch.ops.mkldnn._linear_pointwise``, used only where this build
  has it;
* **one-thread workers** (:func:`one_thread_map`): work split into independent parts, each
  run on a thread of its own whose torch ops use that one thread.  Torch's thread count is a
  per-thread setting, so the caller's stays as it is; results do not depend on the number of
  workers (each part is computed the same way whichever thread runs it);
* **keeping freed memory** (:func:`keep_freed_memory`): glibc's allocator settings, a process
  setting that only a command (training, the benchmarks) should ask for.

``FAST`` (the default everywhere) takes the tricks where they apply — fp32 on CPU — and the
plain torch op anywhere else; ``REFERENCE`` always takes the plain torch ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import register_flop_formula

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _fast_cpu(*tensors: torch.Tensor) -> bool:
    return all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)


def _numpy_sine(x: torch.Tensor, cosine: bool, out: torch.Tensor | None) -> torch.Tensor:
    out = torch.empty_like(x) if out is None else out
    (np.cos if cosine else np.sin)(x.detach().numpy(), out=out.detach().numpy())
    return out


class _SinCos(torch.autograd.Function):
    """``(sin x, cos x)`` on NumPy's kernels whose backward reuses both outputs instead of re-evaluating them.

    The inner loop needs ``cos`` (the sine's derivative) next to ``sin``; differentiating
    the pair through plain autograd would evaluate ``cos`` and ``sin`` once more in the
    backward pass, and transcendental functions are as costly as the matmuls on CPU.
    """

    @staticmethod
    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return _numpy_sine(x, False, None), _numpy_sine(x, True, None)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        ctx.save_for_backward(*output)

    @staticmethod
    def backward(ctx, grad_sin: torch.Tensor | None,  # type: ignore[override]
                 grad_cos: torch.Tensor | None) -> torch.Tensor:
        sin, cos = ctx.saved_tensors
        if grad_sin is None:
            return -grad_cos * sin
        if grad_cos is None:
            return grad_sin * cos
        return torch.addcmul(grad_sin * cos, grad_cos, sin, value=-1.0)


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    fused = bias if bias is not None and bias.dim() == 1 else None  # oneDNN adds a row bias itself
    out = torch.ops.mkldnn._linear_pointwise(x, weight, fused, "none", [], "")
    return out if bias is None or fused is not None else out.add_(bias)


class _OneDNNLinear(torch.autograd.Function):
    """``x Wᵀ + bias`` through oneDNN, differentiable.

    The weight gradient, a product over all points, stays with MKL, the faster of the two for
    that shape.  The backward is made of differentiable operations, so double backward
    (scenes) still works.
    """

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor,  # type: ignore[override]
                bias: torch.Tensor | None) -> torch.Tensor:
        return _onednn_linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.bias_shape = None if bias is None else bias.shape

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = FAST.linear(grad, weight.t()) if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:  # summed over every point of every item: one product on MKL
            grad_weight = grad.reshape(-1, grad.shape[-1]).t() @ x.reshape(-1, x.shape[-1])
        grad_bias = grad.sum_to_size(ctx.bias_shape) if ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


if _ONEDNN:  # FLOP counters (vcinr.meta.flops's tests, profilers) count these products too
    @register_flop_formula(torch.ops.mkldnn._linear_pointwise)
    def _onednn_linear_flops(x_shape, w_shape, *args, **kwargs) -> int:
        return 2 * math.prod(x_shape) * w_shape[0]


@dataclass(frozen=True)
class Backend:
    """Which kernels a network's elementwise sines and shared-weight products run on.

    Attributes:
        numpy_sines: fp32 CPU sines and cosines on NumPy's SIMD loops (not under
            ``torch.compile``, whose own kernels are used there).
        onednn_linear: fp32 CPU products ``x Wᵀ + b`` on oneDNN, where this torch build has it.
    """

    numpy_sines: bool = True
    onednn_linear: bool = True

    def sine(self, x: torch.Tensor, cosine: bool = False, out: torch.Tensor | None = None) -> torch.Tensor:
        """``sin x`` (or ``cos x``) without autograd, into ``out`` if given (may be ``x``)."""
        if self.numpy_sines and _fast_cpu(x) and not torch.compiler.is_compiling():
            return _numpy_sine(x, cosine, out)
        fn = torch.cos if cosine else torch.sin
        return fn(x) if out is None else fn(x, out=out)

    def sin_cos(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sin x, cos x)``, differentiable."""
        if self.numpy_sines and _fast_cpu(x) and not torch.compiler.is_compiling():
            return _SinCos.apply(x)
        return torch.sin(x), torch.cos(x)

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """``x Wᵀ + bias`` for ``x`` ``(..., in)`` and ``weight`` ``(out, in)``, differentiable.

        ``bias`` must broadcast to the output without enlarging it: ``(out,)``, or ``(B, 1, out)``
        (one per item) for ``x`` of shape ``(B, N, in)``; it is added in place to the fresh
        product (``baddbmm`` would first copy the broadcast bias into the output, one more pass).
        """
        if not (self.onednn_linear and _ONEDNN and _fast_cpu(x, weight)):
            if bias is None or bias.dim() == 1:
                return F.linear(x, weight, bias)
            return F.linear(x, weight).add_(bias)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
            return _OneDNNLinear.apply(x, weight, bias)
        return _onednn_linear(x, weight, bias)


FAST = Backend()
REFERENCE = Backend(numpy_sines=False, onednn_linear=False)


@functools.cache
def _one_thread_pool(workers: int) -> ThreadPoolExecutor:
    """Threads kept across calls, each with torch ops on one thread and its warm allocator caches."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vcinr-one-thread",
                              initializer=torch.set_num_threads, initargs=(1,))


def one_thread_map(fn: Callable[..., Any], *parts: Iterable[Any], workers: int) -> list[Any]:
    """``[fn(*args) for args in zip(*parts)]`` computed on ``workers`` threads whose torch ops run on one thread.

    Used where results must not depend on the core count (decoding: float reductions may be
    ordered by the number of threads) and where independent parts on one thread each beat one
    batch on all of them (a CPU meta-step: every small op of a multi-threaded batch ends in a
    barrier that waits for the slower, often descheduled, thread).  Torch releases the GIL
    inside its ops, so the parts run in parallel.  The caller's thread and its torch settings
    are not touched; grad mode is per thread, so ``fn`` sets its own.
    """
    return list(_one_thread_pool(max(1, workers)).map(fn, *parts))


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's upper limit on 64-bit systems
_TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Make glibc reuse freed blocks up to 32 MiB instead of unmapping them (a process setting).

    PyTorch's CPU allocator takes every tensor from ``malloc``.  glibc serves blocks above its
    mmap threshold (128 KiB at first, adapting up to 32 MiB) with fresh ``mmap`` pages and gives
    freed heap memory back to the system, so the multi-megabyte activations of a meta-step are
    page-faulted in again on every allocation: about 30 000 page faults, 5 % of a CIFAR-shaped
    meta-step on one core.  Raising both thresholds makes freed blocks reused; the process then
    keeps its peak memory instead of returning it — a choice for long-running commands, never
    made on import.  Returns whether it took effect (``False`` off Linux/glibc: a no-op).
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
