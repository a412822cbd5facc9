"""Multi-process training and evaluation under `torchrun`.

`torchrun --nproc_per_node N -m liafkd train|distill CONFIG` starts N processes and
sets RANK, WORLD_SIZE and LOCAL_RANK in each; `distributed_run` then joins them in a
process group (NCCL on CUDA, gloo on CPU) and pins process k to GPU LOCAL_RANK.
Without those variables (or with WORLD_SIZE 1) every helper here is a no-op, so the
same code runs in one process.

`data.batch_size` is per process: N processes train on N x batch_size images per step
(as in MMDetection). DistributedDataParallel averages the gradients, so a step is the
gradient of the mean of the processes' losses, each normalised by its own batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from liafkd.config import ConfigError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_context() -> DistContext:
    """The ranks torchrun announced in the environment (one process when absent)."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return DistContext()
    return DistContext(
        rank=int(env["RANK"]),
        world_size=int(env["WORLD_SIZE"]),
        local_rank=int(env.get("LOCAL_RANK", env["RANK"])),
    )


def context() -> DistContext:
    """This process's place in the initialised process group (one process when none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
    )


def device_for(name: str, ctx: DistContext) -> torch.device:
    """`auto` is CUDA when available; under torchrun a bare `cuda` means GPU LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and ctx.enabled:
        device = torch.device("cuda", ctx.local_rank)
    return device


def resolve_device(name: str) -> torch.device:
    """The device `name` means for this process (its GPU under torchrun)."""
    return device_for(name, context())


@contextlib.contextmanager
def distributed_run(device_name: str) -> Iterator[DistContext]:
    """Join torchrun's process group for the duration of a run; ranks above 0 print
    nothing to stdout (their errors still reach stderr)."""
    ctx = env_context()
    if not ctx.enabled or dist.is_initialized():
        yield context()
        return
    device = device_for(device_name, ctx)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    try:
        with _stdout_on_main_only(ctx):
            yield ctx
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def _stdout_on_main_only(ctx: DistContext) -> Iterator[None]:
    if ctx.is_main:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block before the others (e.g. to write a dataset cache once)."""
    ctx = context()
    if ctx.enabled and not ctx.is_main:
        dist.barrier()
    yield
    if ctx.enabled and ctx.is_main:
        dist.barrier()


def barrier() -> None:
    if context().enabled:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over the processes, in place; returns it."""
    if context().enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order (picklable objects; tensors on the CPU)."""
    ctx = context()
    if not ctx.enabled:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every process."""
    if not context().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def eval_shard(num_samples: int, batch_size: int, ctx: DistContext) -> list[int]:
    """This rank's share of a sequential evaluation: whole batches rank, rank + N, ...
    of the single-process batching. No sample is repeated, and every image lands in the
    same batch (so the same padded size) as in one process: the detections are identical."""
    starts = range(0, num_samples, batch_size)
    return [
        i
        for start in list(starts)[ctx.rank :: ctx.world_size]
        for i in range(start, min(start + batch_size, num_samples))
    ]


def convert_sync_bn(module: nn.Module) -> nn.Module:
    """Replace the BatchNorms that train (those in train mode after `module.train()`)
    with SyncBatchNorm; frozen or `norm_eval` BatchNorms keep their running statistics
    and stay plain BatchNorm (so the backbone's train() still keeps them in eval mode)."""
    module.train()
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            is_bn = isinstance(child, nn.modules.batchnorm._BatchNorm)
            if is_bn and not isinstance(child, nn.SyncBatchNorm) and child.training:
                setattr(parent, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
    return module


def wrap_for_training(
    module: nn.Module, device: torch.device, sync_bn: bool, find_unused_parameters: bool
) -> nn.Module:
    """The module a training step calls: `module` itself in one process, else
    DistributedDataParallel over it (optionally with SyncBatchNorm first). The optimizer
    must be built after this, on `module`'s parameters."""
    ctx = context()
    if not ctx.enabled:
        return module
    if sync_bn:
        if device.type != "cuda":
            raise ConfigError(
                "train.sync_bn: SyncBatchNorm needs CUDA; on CPU set model.norm_eval: true "
                "or train without sync_bn"
            )
        convert_sync_bn(module)
    return nn.parallel.DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
    )
