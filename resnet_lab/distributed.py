"""Several processes, one training run: what :func:`resnet_lab.train.train` needs under
``torchrun``.

    torchrun --nproc_per_node 2 -m resnet_lab train --model resnet20 --out runs/ddp

``torchrun`` starts the processes and describes them in the environment (``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``...). Each process holds the whole model, takes an
equal share of every batch, and DistributedDataParallel averages the gradients, so the global
batch and the learning rate are those of one process. Batch normalisation must see the global
batch too, or the processes would normalise with other statistics than one process does:
``nn.SyncBatchNorm`` on CUDA, and :class:`GlobalBatchNorm2d` (the same arithmetic over the
``gloo`` backend) on the CPU, where ``SyncBatchNorm`` does not run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Ranks:
    """Where this process stands under ``torchrun``: rank, number of processes, local rank."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def distributed_setup(device_name: str) -> Ranks:
    """Join the process group that ``torchrun`` describes in the environment (nccl on CUDA,
    gloo on the CPU); a single process when ``WORLD_SIZE`` is unset or 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), local)


def all_sum(t: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Sum ``t`` over all processes, in place (a no-op for one process)."""
    if ranks.world > 1:
        dist.all_reduce(t)
    return t


def barrier(ranks: Ranks) -> None:
    if ranks.world > 1:
        dist.barrier()


class _SumOverProcesses(torch.autograd.Function):
    """all_reduce(SUM) that autograd can go through: the gradient of a sum over processes is
    the sum over processes of the gradients (``torch.distributed.nn.functional.all_reduce``, the
    same bitwise, is deprecated)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch, summed over
    all processes; in evaluation mode, and in a single process, it is BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        local = torch.cat(
            [xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), xf.new_full((1,), x.numel() / c)]
        )
        total = _SumOverProcesses.apply(local)
        n = total[-1]
        mean = total[:c] / n
        var = total[c : 2 * c] / n - mean * mean  # biased, as BN normalises with
        with torch.no_grad():
            self.num_batches_tracked += 1
            cumulative = 1.0 / float(self.num_batches_tracked)
            m = self.momentum if self.momentum is not None else cumulative
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))  # unbiased
        shape = (1, c, 1, 1)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return (y * self.weight.view(shape) + self.bias.view(shape)).to(x.dtype)


def global_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm2d computing global-batch statistics: SyncBatchNorm on CUDA,
    :class:`GlobalBatchNorm2d` elsewhere. Parameters and running statistics are shared with the
    original layers (the same tensors), so the original model sees every update."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            g = GlobalBatchNorm2d(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            )
            g.weight, g.bias = child.weight, child.bias
            g.running_mean, g.running_var = child.running_mean, child.running_var
            g.num_batches_tracked = child.num_batches_tracked
            g.train(child.training)
            setattr(model, name, g)
        else:
            global_batchnorm(child, device)
    return model
