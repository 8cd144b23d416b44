"""Data-parallel meta-training on PyTorch's distributed engine (``torchrun``).

Launched by ``torchrun`` (which sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and the
rendezvous address), :func:`distributed_context` joins the process group — gloo on CPU,
NCCL on CUDA, one GPU per process (``cuda:LOCAL_RANK``) — and tears it down afterwards.
Without ``torchrun`` it gives the single-process context, in which every collective is a
no-op, so the trainer has one code path.

The semantics are those of ``DistributedDataParallel``: every rank holds the same
parameters (broadcast from rank 0 at the start), computes the gradient of its shard of each
global batch, and the gradients are averaged across ranks before the optimiser step, so N
processes with shards of ``B / N`` items take the same steps as one process with ``B``.
Gradients are averaged in one flat all-reduce after the backward pass rather than by DDP's
bucketed hooks: the meta-learner's parameters are few (a flat buffer is small), and the
outer step is not a ``forward`` call of one module, which DDP's hooks are built around.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from vcinr.errors import ConfigError


@dataclass
class DistContext:
    """Where this process stands: ``rank`` of ``world`` processes, and its device."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, metrics and the model; the others only compute."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, global_batch: int) -> slice:
        """This rank's items of a global batch (contiguous, equal shares)."""
        local = global_batch // self.world
        return slice(self.rank * local, (self.rank + 1) * local)

    def broadcast_parameters(self, module: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers."""
        if self.active:
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, params: list[nn.Parameter]) -> None:
        """Replace every gradient by its mean over the ranks (one flat all-reduce)."""
        if not self.active:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, g in zip(params, grads):
            p.grad = flat[offset : offset + g.numel()].view_as(p).clone()
            offset += g.numel()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over the ranks (itself when not distributed)."""
        if not self.active:
            return value
        value = value.detach().clone()
        dist.all_reduce(value)
        return value / self.world

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of a tensor over the ranks (itself when not distributed)."""
        if not self.active:
            return value
        value = value.detach().clone()
        dist.all_reduce(value)
        return value

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (keeps the ranks in step)."""
        if not self.active:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value is not None else default
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def world_size() -> int:
    """Processes of this run: the initialised group's size, else ``torchrun``'s ``WORLD_SIZE``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return max(_env_int("WORLD_SIZE", 1), 1)


@contextmanager
def distributed_context(device: str, timeout_s: float = 1800.0) -> Iterator[DistContext]:
    """The process group for a ``torchrun`` launch, or the single-process context.

    ``device`` is the configured one; under ``torchrun`` on CUDA every process takes the GPU
    ``cuda:LOCAL_RANK`` of its node.  A process group the caller initialised is used as it
    is (and left open).
    """
    if dist.is_available() and dist.is_initialized():
        yield DistContext(dist.get_rank(), dist.get_world_size(), device)
        return
    if world_size() == 1:
        yield DistContext(0, 1, device)
        return
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    cuda = device.startswith("cuda")
    if cuda:
        if torch.cuda.device_count() <= local_rank:
            raise ConfigError(f"process {rank} needs GPU {local_rank} but this node has "
                              f"{torch.cuda.device_count()}; lower --nproc_per_node")
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s),
                            **({"device_id": torch.device(device)} if cuda else {}))
    try:
        yield DistContext(dist.get_rank(), dist.get_world_size(), device)
    finally:
        dist.destroy_process_group()
