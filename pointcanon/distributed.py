"""Running under ``torchrun``: process-group setup and the few collective operations training needs.

``torchrun --nproc_per_node N -m pointcanon.cli train ...`` (or the ``pointcanon`` script) sets
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; :func:`init_from_env` then joins the group (NCCL on GPUs, gloo on
CPUs). Without those variables everything runs as a single process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as torch_dist


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def sum(self, values: list[float]) -> list[float]:
        """Sum a list of numbers over all ranks (float64)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(t)
        return t.tolist()

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate a 1-D tensor from every rank (ranks may hold different lengths), in rank order."""
        if not self.active:
            return tensor
        parts = [None] * self.world
        torch_dist.all_gather_object(parts, tensor.cpu())
        return torch.cat(parts)

    def barrier(self) -> None:
        if self.active:
            torch_dist.barrier()


def init_from_env() -> DistContext:
    """Join the process group described by torchrun's environment variables, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device, backend = torch.device("cuda", local), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend)
    return DistContext(rank=rank, world=world, device=device)


def shutdown(ctx: DistContext) -> None:
    if ctx.active and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
