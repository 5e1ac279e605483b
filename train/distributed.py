"""DDP helpers: process-group setup from torchrun's environment, gathers with and without gradients.

SupCon needs every rank's features as negatives. `gather_with_grad` keeps the autograd graph
(an autograd Function whose backward sums the gradients from all ranks), so with DDP's gradient
averaging the update equals the single-process one on the whole batch.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {requested}: CUDA is not available on this machine (use --device cpu)")
    if requested not in ("cpu",) and not requested.startswith("cuda"):
        raise ValueError(f"--device must be cpu, cuda[:N] or auto, got {requested!r}")
    return torch.device(requested)


def init_distributed(requested_device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else a single process."""
    device = resolve_device(requested_device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        # A DistributedDataParallel left for interpreter exit (reference cycles) outlives the process group
        # and gloo aborts the rank ("terminate called without an active exception"): collect it first, and
        # let no rank tear down while its peer is still inside a collective.
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums every rank's gradient for this rank's slice.

    Every rank computes the same loss on the gathered batch, so the gradient of this rank's features is
    the sum over ranks; DDP then averages parameter gradients, which gives exactly the single-process
    gradient of the whole batch (checked in tests/train/test_train_distributed.py).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.size = dist.get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` (same shape on every rank) along dim 0, gradients flowing back to each rank's part."""
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def gather_variable(tensor: torch.Tensor) -> torch.Tensor:
    """all_gather for per-rank tensors whose first dimension differs (evaluation outputs)."""
    if not is_distributed():
        return tensor
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = gather_no_grad(size).tolist()
    padded = torch.zeros((max(sizes), *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    parts = gather_no_grad(padded).split(max(sizes))
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)], dim=0)


def broadcast_flag(value: bool, device: torch.device) -> bool:
    """Rank 0 decides (e.g. early stopping); every rank follows."""
    if not is_distributed():
        return value
    flag = torch.tensor([1 if value else 0], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def barrier() -> None:
    if is_distributed():
        dist.barrier()
