"""How a meta-step runs fast (see ``docs/performance.md``; the kernels and threads are :mod:`vcinr.backend`'s).

:func:`meta_loss_function` optionally compiles the outer loss with ``torch.compile``.  The
inner-loop gradient is written out (:mod:`vcinr.inr.siren`), so the meta-gradient is one
ordinary backward pass, which ``torch.compile`` accepts (it refuses double backward).
Compiling is the caller's explicit choice (``compile_``; the ``vcinr train`` command reads it
from ``VCINR_COMPILE=1``, library code never reads the environment): it costs about a minute
of warm-up per process (less with a warm inductor cache) and pays back only over long runs.  Where it fails (no C++
compiler, an unsupported construct) the run goes on eagerly with a warning.

:func:`meta_backward` splits a meta-step's batch over ``workers`` threads, each running its
ops on one thread (:func:`vcinr.backend.one_thread_map`); ``workers=1`` is the plain path.
The step is hundreds of small elementwise ops on activations of a few MiB; with one batch on
two OpenMP threads every op ends in a barrier that waits for the slower (often descheduled)
thread, while two halves on one thread each never wait for each other.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from vcinr.backend import one_thread_map
from vcinr.inr import noise
from vcinr.meta.metasgd import MetaINR, item_coords


def meta_loss_function(model: MetaINR, compile_: bool = False) -> Callable[..., torch.Tensor]:
    """``model.meta_loss``, compiled when ``compile_``."""
    if not compile_:
        return model.meta_loss
    compiled: list[Callable[..., torch.Tensor]] = [torch.compile(model.meta_loss)]

    def meta_loss(*args, **kwargs) -> torch.Tensor:
        if compiled[0] is model.meta_loss:
            return model.meta_loss(*args, **kwargs)
        try:
            return compiled[0](*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back to eager
            reason = str(exc).splitlines()[0] if str(exc) else ""
            warnings.warn(f"torch.compile failed ({type(exc).__name__}: {reason}); running the meta-step eagerly",
                          RuntimeWarning, stacklevel=2)
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
        with noise.thread_generator(torch.Generator(device=targets.device).manual_seed(seed)):
            loss = meta_loss(item_coords(coords, part), targets[part], **kwargs) * ((part.stop - part.start) / batch)
        return loss.detach(), torch.autograd.grad(loss, params, allow_unused=True)

    results = one_thread_map(run, parts, seeds, workers=len(parts))
    for index, param in enumerate(params):
        grads = [grads[index] for _, grads in results if grads[index] is not None]
        if grads:
            total = sum(grads[1:], grads[0])
            param.grad = total if param.grad is None else param.grad + total
    return torch.stack([loss for loss, _ in results]).sum()
