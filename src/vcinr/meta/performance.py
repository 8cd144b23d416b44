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

:func:`meta_backward` splits a meta-step's batch over as many Python threads as the process
has torch threads, each running its ops on one thread.  The step is hundreds of small
elementwise ops on activations of a few MiB; with one batch on two OpenMP threads every op
ends in a barrier that waits for the slower (often descheduled) thread, while two halves on
one thread each never wait for each other (torch releases the GIL inside its ops).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from vcinr.inr import noise
from vcinr.meta.metasgd import MetaINR, item_coords

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


def step_workers(device: torch.device | str, compile_: bool) -> int:
    """Threads a meta-step splits its batch over: the process's torch threads on CPU, else 1.

    A GPU runs the whole batch in one stream, and a compiled step already fuses the small ops
    the split is for (its compiler is not meant to be driven from several threads at once).
    """
    if torch.device(device).type != "cpu" or compile_:
        return 1
    return torch.get_num_threads()


@functools.cache
def _step_pool(workers: int) -> ThreadPoolExecutor:
    """Threads kept across steps: each keeps its one-thread setting and its warm allocator caches."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vcinr-step")


def meta_backward(meta_loss: Callable[..., torch.Tensor], params: list[torch.nn.Parameter], coords: torch.Tensor,
                  targets: torch.Tensor, workers: int = 1, **kwargs) -> torch.Tensor:
    """The batch's outer loss (detached), with its gradient added to every ``p.grad``.

    With ``workers > 1`` the items are split into that many contiguous parts, each run (loss
    and backward) on its own thread with one-threaded ops; the parts' gradients are summed in
    a fixed order, so the result does not depend on thread timing.  Items are independent in
    the outer loss (the mean of per-item losses), so this is the whole batch's gradient up to
    float rounding.  Each part draws its training noise (:mod:`vcinr.inr.noise`) from its own
    generator seeded from the global one, which the caller seeds per step; the noise therefore
    depends on ``workers``, as it depends on the number of ranks under torchrun.

    Args:
        meta_loss: ``MetaINR.meta_loss`` or its compiled form.
        coords: ``(N, in_dim)`` shared or ``(B, N, in_dim)`` per-item coordinates.
        targets: ``(B, N, out_dim)``.
        kwargs: passed on to ``meta_loss``.
    """
    batch = targets.shape[0]
    count = max(1, min(workers, batch))
    parts = [slice(batch * i // count, batch * (i + 1) // count) for i in range(count)]
    if len(parts) == 1:
        loss = meta_loss(coords, targets, **kwargs)
        loss.backward()
        return loss.detach()
    seeds = torch.randint(0, 2**62, (len(parts),)).tolist()

    def run(part: slice, seed: int) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:
        torch.set_num_threads(1)  # a setting of this thread's own: the caller's stays as it is
        with noise.thread_generator(torch.Generator(device=targets.device).manual_seed(seed)):
            loss = meta_loss(item_coords(coords, part), targets[part], **kwargs) * ((part.stop - part.start) / batch)
        return loss.detach(), torch.autograd.grad(loss, params, allow_unused=True)

    results = list(_step_pool(len(parts)).map(run, parts, seeds))
    for index, param in enumerate(params):
        grads = [grads[index] for _, grads in results if grads[index] is not None]
        if grads:
            total = sum(grads[1:], grads[0])
            param.grad = total if param.grad is None else param.grad + total
    return torch.stack([loss for loss, _ in results]).sum()
